// Compare: one prompt to two or three panels at once, each with its own endpoint and
// parameters, streaming in parallel, each with its own figures.
import { readParams } from "./chat.js";
import { CHAT, COMPLETIONS, generationBody, replyBubble, streamReply } from "./reply.js";

const $ = (selector) => document.querySelector(selector);
const MAX_PANELS = 3;

const PANEL_FORM = `
  <div class="panel-head">
    <select name="endpoint" aria-label="Endpoint"></select>
    <button type="button" class="ghost small remove" aria-label="Remove panel">&times;</button>
  </div>
  <div class="param-row">
    <label>temperature <input name="temperature" type="number" min="0" max="2" step="0.1"></label>
    <label>max_tokens <input name="max_tokens" type="number" min="1" step="1" value="128"></label>
    <label>top_p <input name="top_p" type="number" min="0" max="1" step="0.05" placeholder="default"></label>
  </div>
  <div class="messages"></div>`;

export function setupCompare(page) {
  const panels = $("#compare-panels");
  let controllers = [];

  const generators = () => page.withTask([CHAT, COMPLETIONS]);

  function fillSelect(select, preferred) {
    const current = select.value || preferred;
    select.replaceChildren(...generators().map((e) => new Option(e.name, e.name)));
    if (generators().some((e) => e.name === current)) select.value = current;
  }

  function addPanel(endpoint, temperature) {
    if (panels.children.length >= MAX_PANELS) return;
    const panel = document.createElement("form");
    panel.className = "compare-panel";
    panel.dataset.testid = "compare-panel";
    panel.innerHTML = PANEL_FORM;
    panel.addEventListener("submit", (event) => event.preventDefault());
    fillSelect(panel.elements.endpoint, endpoint);
    if (temperature !== undefined) panel.elements.temperature.value = String(temperature);
    panel.querySelector(".remove").addEventListener("click", () => {
      if (panels.children.length > 1) panel.remove();
      $("#compare-add").disabled = panels.children.length >= MAX_PANELS;
    });
    panels.append(panel);
    $("#compare-add").disabled = panels.children.length >= MAX_PANELS;
  }

  async function runPanel(panel, text, signal) {
    const endpoint = page.endpoint(panel.elements.endpoint.value);
    const box = panel.querySelector(".messages");
    box.replaceChildren();
    if (!endpoint) return;
    const params = readParams(panel);
    const system = $("#chat-params").elements.system.value.trim();
    const messages = system ? [{ role: "system", content: system }] : [];
    messages.push({ role: "user", content: text });
    const body = generationBody(endpoint.task, messages, params);
    const node = replyBubble(box, endpoint.name);
    const result = await streamReply(node, { endpoint: endpoint.name, task: endpoint.task, body, signal });
    if (result.outcome === "error") page.showError(`${endpoint.name}: ${result.error}`);
  }

  async function sendAll() {
    const text = $("#compare-prompt").value.trim();
    if (!text || controllers.length) return;
    page.clearError();
    $("#compare-send").disabled = true;
    $("#compare-stop").disabled = false;
    const runs = [...panels.children].map((panel) => {
      const controller = new AbortController();
      controllers.push(controller);
      return runPanel(panel, text, controller.signal);
    });
    await Promise.allSettled(runs);
    controllers = [];
    $("#compare-send").disabled = false;
    $("#compare-stop").disabled = true;
  }

  $("#compare-send").addEventListener("click", sendAll);
  $("#compare-stop").addEventListener("click", () => controllers.forEach((c) => c.abort()));
  $("#compare-add").addEventListener("click", () => addPanel(generators()[0]?.name));
  $("#compare-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      sendAll();
    }
  });

  page.onEndpoints(() => {
    if (!panels.children.length && generators().length) {
      // Two chat endpoints side by side, or one endpoint at two temperatures.
      const chats = page.withTask([CHAT]);
      const [first, second] = chats.length ? chats : generators();
      addPanel(first.name, 0.2);
      addPanel((second || first).name, second ? 0.2 : 1.0);
    }
    for (const panel of panels.children) fillSelect(panel.elements.endpoint);
  });
}
