// Query endpoint: the Serving UI's form. A raw JSON body, "Show example" for the
// endpoint's task, "Send request", and the raw answer with status, latency and the
// served-model-name header. Invalid JSON is reported before anything is sent.
import { invocationsPath, postRaw } from "./api.js";

const $ = (selector) => document.querySelector(selector);

const CHAT_EXAMPLE = {
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is a model serving endpoint?" },
  ],
  max_tokens: 64,
};

/** A valid example request body for each task. */
export const EXAMPLES = {
  "llm/v1/chat": CHAT_EXAMPLE,
  "llm/v1/completions": { prompt: "The capital of France is", max_tokens: 16 },
  "llm/v1/embeddings": { input: ["A model serving endpoint.", "An endpoint that serves models."] },
  "agent/v1/chat": { messages: [{ role: "user", content: "Hello!" }] },
  "agent/v2/chat": { messages: [{ role: "user", content: "Hello!" }] },
  "agent/v1/responses": { input: [{ role: "user", content: "Hello!" }] },
};

export function setupQuery(page) {
  const editor = $("#query-json");
  const served = $("#query-served");
  const meta = $("#query-meta");
  const output = $("#query-body");

  const path = () => {
    const endpoint = page.selected();
    return endpoint ? invocationsPath(endpoint.name, served.value) : "";
  };

  function refresh() {
    const endpoint = page.selected();
    const entities = endpoint?.config?.served_entities || endpoint?.config?.served_models || [];
    const options = [new Option("(the endpoint: traffic split)", "")];
    for (const entity of entities) options.push(new Option(entity.name, entity.name));
    served.replaceChildren(...options);
    $("#query-path").textContent = path();
  }

  function showExample() {
    const endpoint = page.selected();
    const example = EXAMPLES[endpoint?.task] || CHAT_EXAMPLE;
    editor.value = JSON.stringify(example, null, 2);
    page.clearError();
  }

  async function send() {
    const endpoint = page.selected();
    if (!endpoint) return;
    try {
      JSON.parse(editor.value);
    } catch (error) {
      const message = `Request body is not valid JSON: ${error.message}`;
      page.showError(message);
      meta.textContent = "Not sent: the body is not valid JSON.";
      meta.className = "meta bad";
      output.textContent = message;
      return;
    }
    page.clearError();
    meta.textContent = `Sending to ${path()} ...`;
    meta.className = "meta";
    output.textContent = "";
    $("#query-send").disabled = true;
    try {
      const { response, body, ms } = await postRaw(path(), editor.value);
      const servedName = response.headers.get("served-model-name");
      meta.textContent = [
        `HTTP ${response.status}`,
        `${Math.round(ms)} ms`,
        servedName ? `served-model-name: ${servedName}` : "no served-model-name",
        response.headers.get("content-type") || "",
      ].join(" · ");
      meta.className = response.ok ? "meta good" : "meta bad";
      meta.dataset.status = String(response.status);
      let shown = body;
      try {
        shown = JSON.stringify(JSON.parse(body), null, 2);
      } catch {
        // a stream or plain text: shown as it came
      }
      output.textContent = shown;
    } catch (error) {
      meta.textContent = `Request failed: ${error.message}`;
      meta.className = "meta bad";
      page.showError(error);
    } finally {
      $("#query-send").disabled = false;
    }
  }

  $("#show-example").addEventListener("click", showExample);
  $("#query-send").addEventListener("click", send);
  served.addEventListener("change", () => {
    $("#query-path").textContent = path();
  });
  $("#endpoint-select").addEventListener("change", refresh);
  page.onEndpoints(refresh);
}
