// One streamed reply: the request body for chat or completions endpoints, the element
// that shows reasoning, answer and tool calls as they arrive, and the reply's figures.
import { invocationsPath, streamEvents } from "./api.js";

export const CHAT = "llm/v1/chat";
export const COMPLETIONS = "llm/v1/completions";

/** The request body for `task`: messages for chat, the last user turn as prompt otherwise. */
export function generationBody(task, messages, params, stream = true) {
  const body = task === CHAT
    ? { messages: messages.map(wireMessage) }
    : { prompt: [...messages].reverse().find((m) => m.role === "user")?.content ?? "" };
  for (const key of ["temperature", "max_tokens", "top_p", "stop"]) {
    if (params[key] !== undefined) body[key] = params[key];
  }
  if (task === CHAT) {
    for (const key of ["tools", "tool_choice", "response_format"]) {
      if (params[key] !== undefined) body[key] = params[key];
    }
  }
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

/** A history message as the contract wants it (no empty content beside tool calls). */
export function wireMessage(message) {
  if (message.role === "assistant" && message.tool_calls?.length) {
    return { role: "assistant", content: message.content || null, tool_calls: message.tool_calls };
  }
  return { role: message.role, content: message.content };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A user (or system) turn in a message list. */
export function userBubble(container, text) {
  const node = element("article", "msg user");
  node.append(element("div", "role", "you"), element("div", "content", text));
  container.append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

/** An empty assistant reply, ready to be streamed into. */
export function replyBubble(container, label = "assistant") {
  const node = element("article", "msg assistant");
  node.dataset.testid = "assistant-message";
  node.dataset.state = "waiting";
  node.dataset.chunks = "0";
  const reasoning = element("details", "reasoning");
  reasoning.hidden = true;
  reasoning.open = true;
  reasoning.append(element("summary", "", "Reasoning"), element("div", "reasoning-text"));
  const content = element("div", "content");
  content.dataset.testid = "assistant-content";
  const stats = element("div", "stats", "waiting for the model...");
  stats.dataset.testid = "reply-stats";
  node.append(element("div", "role", label), reasoning, content, element("div", "calls"), stats);
  container.append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

/** Text and reasoning of one delta, whatever form the endpoint streams them in. */
function deltaParts(delta) {
  let text = "";
  let reasoning = delta.reasoning_content || delta.reasoning || "";
  if (typeof delta.content === "string") text = delta.content;
  else if (Array.isArray(delta.content)) {
    for (const part of delta.content) {
      if (part.type === "text") text += part.text || "";
      else if (part.type === "reasoning") {
        for (const summary of part.summary || []) reasoning += summary.text || "";
        reasoning += part.text || "";
      }
    }
  }
  return { text, reasoning };
}

function mergeToolCalls(calls, deltas) {
  for (const delta of deltas) {
    const index = delta.index ?? calls.length;
    const call = (calls[index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
    if (delta.id) call.id = delta.id;
    if (delta.function?.name) call.function.name += delta.function.name;
    if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
  }
}

function renderCalls(node, calls) {
  const box = node.querySelector(".calls");
  box.replaceChildren(
    ...calls.filter(Boolean).map((call) => {
      const card = element("div", "tool-call");
      card.dataset.testid = "tool-call";
      card.append(
        element("span", "tool-name", `call ${call.function.name}`),
        element("code", "", call.function.arguments || "{}"),
      );
      return card;
    }),
  );
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** "TTFT 0.31 s · total 2.10 s · 12 in / 48 out · 26.8 tok/s" */
export function statsLine(result) {
  const parts = [];
  if (result.ttft !== null) parts.push(`TTFT ${seconds(result.ttft)}`);
  parts.push(`total ${seconds(result.total)}`);
  if (result.usage) {
    const { prompt_tokens: input = 0, completion_tokens: output = 0 } = result.usage;
    parts.push(`${input} in / ${output} out`);
    const generating = result.total - (result.ttft ?? 0);
    if (output > 0 && generating > 0) parts.push(`${(output / (generating / 1000)).toFixed(1)} tok/s`);
  } else {
    parts.push(`${result.chunks} chunks`);
  }
  if (result.finish) parts.push(`finish: ${result.finish}`);
  return parts.join(" · ");
}

/**
 * Stream a generation into `node`; resolves with the reply (text, reasoning, tool_calls,
 * usage, figures) and `outcome` "done", "stopped" (aborted) or "error" (with `error`).
 */
export async function streamReply(node, { endpoint, task, body, signal }) {
  const started = performance.now();
  const content = node.querySelector(".content");
  const reasoningBox = node.querySelector(".reasoning");
  const reasoningText = node.querySelector(".reasoning-text");
  const result = {
    text: "", reasoning: "", tool_calls: [], usage: null, finish: null,
    ttft: null, total: 0, chunks: 0, outcome: "done", error: null,
  };
  node.dataset.state = "streaming";
  const first = () => {
    if (result.ttft === null) result.ttft = performance.now() - started;
  };
  try {
    for await (const chunk of streamEvents(invocationsPath(endpoint), body, signal)) {
      if (chunk.usage) result.usage = chunk.usage; // running totals or one final chunk
      for (const choice of chunk.choices || []) {
        if (choice.index) continue; // the playground asks for one choice
        if (choice.finish_reason) result.finish = choice.finish_reason;
        const delta = task === CHAT ? choice.delta || {} : { content: choice.text };
        const { text, reasoning } = deltaParts(delta);
        if (reasoning) {
          first();
          result.reasoning += reasoning;
          reasoningBox.hidden = false;
          reasoningText.textContent = result.reasoning;
        }
        if (text) {
          first();
          if (result.reasoning) reasoningBox.open = false; // the answer has started
          result.text += text;
          content.textContent = result.text;
          result.chunks += 1;
          node.dataset.chunks = String(result.chunks);
        }
        if (delta.tool_calls) {
          first();
          mergeToolCalls(result.tool_calls, delta.tool_calls);
          renderCalls(node, result.tool_calls);
          result.chunks += 1;
          node.dataset.chunks = String(result.chunks);
        }
      }
    }
  } catch (error) {
    if (error.name === "AbortError") result.outcome = "stopped";
    else {
      result.outcome = "error";
      result.error = error;
      const box = element("div", "reply-error", String(error));
      box.dataset.testid = "reply-error";
      node.querySelector(".calls").after(box);
    }
  }
  result.tool_calls = result.tool_calls.filter(Boolean);
  result.total = performance.now() - started;
  const note = { stopped: " · stopped", error: " · failed" }[result.outcome] || "";
  node.querySelector(".stats").textContent = statsLine(result) + note;
  node.dataset.state = result.outcome;
  return result;
}
