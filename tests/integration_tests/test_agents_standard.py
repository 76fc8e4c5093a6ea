"""LangChain's standard `ChatModelIntegrationTests` against an agent endpoint.

The agent (locally `local-agent`, `agent/v1/responses`) is queried with the default
`api="auto"`, so the listing picks the Responses protocol; the per-call `model=` tests
switch to the ChatAgent endpoint (`local-chat-agent`, `agent/v2/chat`). Locally its model is
SmolLM2-135M driven by the agent's loop: the caller's tools are offered next to the agent's
calculator and clock, and a call of a caller's tool ends the turn for the caller.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_servingx import ChatServing
from tests.integration_tests.settings import AGENT_PARAMS, ENDPOINTS, LIVE, MODE

ENDPOINT_KINDS = ("agent",)


class TestChatServingAgentStandard(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatServing]:
        return ChatServing

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(AGENT_PARAMS)

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str | None:
        # The ChatAgent endpoint; in workspace mode from SERVINGX_IT_CHAT_AGENT_ENDPOINT.
        return ENDPOINTS["chat_agent"] or None

    @property
    def enable_vcr_tests(self) -> bool:
        # test_stream_time needs a cassette; live runs have none.
        return not LIVE

    @pytest.mark.xfail(
        condition=MODE != "workspace",
        reason=(
            "model limitation: JSON mode (text.format json_object, passed by the agent to "
            "its model as response_format json_object) constrains the answer to JSON but "
            "leaves its keys to the model, and SmolLM2-135M nests 'setup' and 'punchline' "
            "under other keys; the same test is xfailed on local-chat for the same reason"
        ),
        strict=False,
    )
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
