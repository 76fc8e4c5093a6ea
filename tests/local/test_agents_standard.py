"""LangChain's standard `ChatModelIntegrationTests` against the local agent endpoint.

`local-agent` (`agent/v1/responses`) is queried with the default `api="auto"`, so the
listing picks the Responses protocol. Its model is SmolLM2-135M, driven by the agent's loop:
the caller's tools are offered next to the agent's calculator and clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_servingx import ChatServing

pytestmark = pytest.mark.local


@pytest.fixture(autouse=True)
def _local_env(local_env: str) -> str:
    return local_env


class TestLocalAgentStandard(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatServing]:
        return ChatServing

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"endpoint": "local-agent", "temperature": 0, "max_tokens": 128, "timeout": 300}

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
        return "local-chat-agent"

    @property
    def enable_vcr_tests(self) -> bool:
        return False

    @pytest.mark.xfail(
        reason=(
            "model limitation: JSON mode (text.format json_object, passed by the agent to "
            "its model as response_format json_object) constrains the answer to JSON but "
            "leaves its keys to the model, and SmolLM2-135M nests 'setup' and 'punchline' "
            "under other keys; the same test is xfailed on local-chat for the same reason"
        ),
        strict=False,
    )
    def test_json_mode(self, model: Any) -> None:
        super().test_json_mode(model)
