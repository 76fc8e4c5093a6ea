// The chat view: system prompt, parameters, tools, multi-turn history, streamed replies.
import { exportCode } from "./exporter.js";
import { CHAT, generationBody, replyBubble, streamReply, userBubble } from "./reply.js";

const $ = (selector) => document.querySelector(selector);

const EXAMPLE_TOOL = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather in a city.",
      parameters: {
        type: "object",
        properties: { city: { type: "string", description: "The city" } },
        required: ["city"],
      },
    },
  },
];

/** A form value as JSON, or a clear error naming the field. */
function parseField(label, text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${label} is not valid JSON: ${error.message}`);
  }
}

/** The parameters a parameter form sets (unset fields are left out of the request). */
export function readParams(form) {
  const params = {};
  const number = (name, parse) => {
    const input = form.elements[name];
    if (input && input.value.trim() !== "") params[name] = parse(input.value);
  };
  number("temperature", Number.parseFloat);
  number("max_tokens", (v) => Number.parseInt(v, 10));
  number("top_p", Number.parseFloat);
  const stop = form.elements.stop?.value.split("\n").filter((s) => s !== "");
  if (stop?.length) params.stop = stop;
  const format = form.elements.response_format?.value;
  if (format === "json_object") params.response_format = { type: "json_object" };
  if (format === "json_schema") {
    const schema = parseField("json_schema", form.elements.json_schema.value);
    if (!schema || typeof schema !== "object" || !schema.name || !schema.schema) {
      throw new Error('json_schema needs a "name" and a "schema" object');
    }
    params.response_format = { type: "json_schema", json_schema: schema };
  }
  const toolsText = form.elements.tools?.value.trim();
  if (toolsText) {
    const tools = parseField("tools", toolsText);
    if (!Array.isArray(tools)) throw new Error("tools must be a JSON list of tool definitions");
    params.tools = tools;
    const choice = form.elements.tool_choice.value;
    params.tool_choice = choice.startsWith("function:")
      ? { type: "function", function: { name: choice.slice("function:".length) } }
      : choice;
  }
  return params;
}

/** The tool_choice options: auto, none, required, and each defined tool by name. */
function refreshToolChoice(form) {
  const select = form.elements.tool_choice;
  const current = select.value;
  let names = [];
  try {
    const tools = JSON.parse(form.elements.tools.value || "[]");
    names = Array.isArray(tools) ? tools.map((t) => t?.function?.name).filter(Boolean) : [];
  } catch {
    // invalid JSON is reported when sending
  }
  const options = ["auto", "none", "required"].map((v) => new Option(v, v));
  for (const name of names) options.push(new Option(`function: ${name}`, `function:${name}`));
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

export function setupChat(page) {
  const form = $("#chat-params");
  const messagesBox = $("#chat-messages");
  const prompt = $("#prompt-input");
  const turns = []; // {role, content, tool_calls?, node}
  let running = null; // the AbortController of the reply in flight

  const busy = (on) => {
    $("#send-button").disabled = on;
    $("#regenerate-button").disabled = on;
    $("#stop-button").disabled = !on;
  };

  const conversation = () => {
    const system = form.elements.system.value.trim();
    const wire = turns.map(({ role, content, tool_calls: calls }) => (
      calls?.length ? { role, content, tool_calls: calls } : { role, content }
    ));
    return system ? [{ role: "system", content: system }, ...wire] : wire;
  };

  async function reply() {
    const endpoint = page.selected();
    if (!endpoint) return;
    let params;
    try {
      params = readParams(form);
    } catch (error) {
      page.showError(error.message);
      return;
    }
    page.clearError();
    const task = endpoint.task === CHAT ? CHAT : endpoint.task;
    const body = generationBody(task, conversation(), params);
    const node = replyBubble(messagesBox, endpoint.name);
    running = new AbortController();
    busy(true);
    const result = await streamReply(node, {
      endpoint: endpoint.name, task, body, signal: running.signal,
    });
    running = null;
    form.addEventListener("submit", (event) => event.preventDefault());
  busy(false);
    if (result.outcome === "error") {
      page.showError(result.error);
      return;
    }
    turns.push({ role: "assistant", content: result.text, tool_calls: result.tool_calls, node });
  }

  function send() {
    const text = prompt.value.trim();
    if (!text || running) return;
    prompt.value = "";
    turns.push({ role: "user", content: text, node: userBubble(messagesBox, text) });
    reply();
  }

  function regenerate() {
    if (running) return;
    if (turns.at(-1)?.role === "assistant") turns.pop().node.remove();
    const last = messagesBox.lastElementChild;
    if (last?.dataset.testid === "assistant-message") last.remove(); // a failed or stopped reply
    if (turns.at(-1)?.role === "user") reply();
  }

  function clear() {
    running?.abort();
    turns.length = 0;
    messagesBox.replaceChildren();
    page.clearError();
  }

  $("#send-button").addEventListener("click", send);
  $("#stop-button").addEventListener("click", () => running?.abort());
  $("#regenerate-button").addEventListener("click", regenerate);
  $("#clear-button").addEventListener("click", clear);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });
  form.elements.response_format.addEventListener("change", () => {
    form.querySelector(".schema-editor").hidden = form.elements.response_format.value !== "json_schema";
  });
  form.elements.tools.addEventListener("input", () => refreshToolChoice(form));
  $("#example-tool").addEventListener("click", () => {
    form.elements.tools.value = JSON.stringify(EXAMPLE_TOOL, null, 2);
    refreshToolChoice(form);
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  busy(false);

  // Export: the conversation so far (plus a typed, unsent prompt) and the parameters.
  const dialog = $("#export-dialog");
  const render = () => {
    const endpoint = page.selected();
    let params;
    try {
      params = readParams(form);
    } catch (error) {
      page.showError(error.message);
      return false;
    }
    const messages = conversation();
    if (prompt.value.trim()) messages.push({ role: "user", content: prompt.value.trim() });
    if (!messages.some((m) => m.role === "user")) {
      messages.push({ role: "user", content: "Hello!" });
    }
    $("#export-code").textContent = exportCode($("#export-format").value, {
      endpoint: endpoint?.name || "local-chat",
      task: endpoint?.task || CHAT,
      host: location.origin,
      messages,
      params,
    });
    return true;
  };
  $("#export-button").addEventListener("click", () => {
    if (render()) dialog.showModal();
  });
  $("#export-format").addEventListener("change", render);
  $("#export-close").addEventListener("click", () => dialog.close());
  $("#export-copy").addEventListener("click", () => {
    navigator.clipboard?.writeText($("#export-code").textContent).catch(() => {});
  });
}
