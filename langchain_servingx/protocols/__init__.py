"""The wire protocols ChatServing speaks, one module each.

- `chat`: chat completions (`llm/v1/chat`, `agent/v1/chat`, OpenAI-compatible servers);
- `responses`: MLflow's `ResponsesAgent` / OpenAI Responses shape (`agent/v1/responses`);
- `chat_agent`: MLflow's `ChatAgent` (`agent/v2/chat`);
- `base`: what a protocol provides, and which one an endpoint's task needs;
- `_items`: agent output items <-> LangChain content blocks (both agent protocols);
- `streams` and `agent_wire`: LangChain-free rules shared with the transport and the local
  endpoint (end of stream and errors; ChatAgent messages <-> Responses items).

A protocol turns LangChain messages and call parameters into a request body, and answers
and stream chunks back into LangChain's results; ChatServing picks one per call and
delegates to it. This package imports nothing itself, so the LangChain-free modules can be
imported on their own.
"""
