// The page: endpoint listing, tabs, the error banner; each view lives in its own module.
import { getJSON } from "./api.js";
import { setupChat } from "./chat.js";
import { setupCompare } from "./compare.js";
import { setupEmbeddings } from "./embeddings.js";
import { setupQuery } from "./query.js";

const $ = (selector) => document.querySelector(selector);
const REFRESH_LOADING_MS = 3000;

// A token in the address bar has been traded for the cookie (or refused): never keep it.
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname);
}

const listeners = [];

/** What every view shares: the endpoints, the selected one, the error banner. */
const page = {
  endpoints: [],

  endpoint(name) {
    return page.endpoints.find((e) => e.name === name);
  },

  selected() {
    return page.endpoint($("#endpoint-select").value);
  },

  select(name) {
    const select = $("#endpoint-select");
    if (select.value !== name && page.endpoint(name)) {
      select.value = name;
      select.dispatchEvent(new Event("change"));
    }
  },

  /** Endpoints whose task is one of `tasks` ("*": any). */
  withTask(tasks) {
    return page.endpoints.filter((e) => tasks.includes("*") || tasks.includes(e.task));
  },

  onEndpoints(listener) {
    listeners.push(listener);
  },

  showError(error) {
    const banner = $("#error-banner");
    const signIn = error?.status === 401;
    const hint = signIn ? "\nOpen the address servingx-local printed (/?token=...), or paste its token:" : "";
    banner.querySelector(".error-text").textContent = String(error) + hint;
    $("#login-form").hidden = !signIn;
    banner.hidden = false;
  },

  clearError() {
    $("#error-banner").hidden = true;
  },
};

function state(endpoint) {
  const ready = endpoint.state?.ready === "READY";
  if (ready) return { label: "ready", css: "ready" };
  if (endpoint.state?.config_update === "UPDATE_FAILED") return { label: "failed", css: "failed" };
  return { label: "loading", css: "loading" };
}

/** "name (provider: model)" for each served entity, with its traffic share when split. */
function servedModels(endpoint) {
  const entities = endpoint.config?.served_entities || endpoint.config?.served_models || [];
  const routes = endpoint.config?.traffic_config?.routes || [];
  return entities.map((s) => {
    let label = s.name;
    if (s.external_model) {
      const { provider, name } = s.external_model;
      label += name === s.name ? ` (${provider})` : ` (${provider}: ${name})`;
    } else {
      const model = s.foundation_model?.name || s.entity_name || "";
      if (model && model !== s.name) label += ` (${model})`;
    }
    const share = routes.find((r) => r.served_model_name === s.name)?.traffic_percentage;
    return entities.length > 1 && share !== undefined ? `${label} ${share}%` : label;
  });
}

function renderEndpoints() {
  const select = $("#endpoint-select");
  const previous = select.value;
  const groups = new Map();
  for (const endpoint of page.endpoints) {
    const task = endpoint.task || "custom";
    if (!groups.has(task)) groups.set(task, document.createElement("optgroup"));
    const group = groups.get(task);
    group.label = task;
    const option = new Option(endpoint.name, endpoint.name);
    const { label } = state(endpoint);
    if (label !== "ready") option.textContent += ` (${label})`;
    group.append(option);
  }
  select.replaceChildren(...groups.values());
  if (page.endpoint(previous)) select.value = previous;

  const list = $("#endpoint-list");
  list.replaceChildren(
    ...page.endpoints.map((endpoint) => {
      const item = document.createElement("li");
      item.dataset.endpoint = endpoint.name;
      item.className = endpoint.name === select.value ? "selected" : "";
      const { label, css } = state(endpoint);
      item.innerHTML = `<div class="name"></div><div class="task"></div><div class="served"></div>`;
      item.querySelector(".name").textContent = endpoint.name;
      const pill = document.createElement("span");
      pill.className = `pill ${css}`;
      pill.textContent = label;
      item.querySelector(".name").append(pill);
      item.querySelector(".task").textContent = `${endpoint.task || "no task"} · ${endpoint.endpoint_type || ""}`;
      item.querySelector(".served").textContent = servedModels(endpoint).join(", ");
      item.addEventListener("click", () => page.select(endpoint.name));
      return item;
    }),
  );
  summarize();
}

function summarize() {
  const endpoint = page.selected();
  $("#endpoint-summary").textContent = endpoint
    ? `${endpoint.task || "no task"} · ${state(endpoint).label} · serves ${servedModels(endpoint).join(", ")}`
    : "";
  for (const item of document.querySelectorAll("#endpoint-list li")) {
    item.classList.toggle("selected", item.dataset.endpoint === endpoint?.name);
  }
}

let refreshTimer = null;

async function refreshEndpoints() {
  clearTimeout(refreshTimer);
  try {
    const listing = await getJSON("/api/2.0/serving-endpoints");
    page.endpoints = listing.endpoints || [];
    renderEndpoints();
    listeners.forEach((listener) => listener(page.endpoints));
    if (page.endpoints.some((e) => state(e).label === "loading")) {
      refreshTimer = setTimeout(refreshEndpoints, REFRESH_LOADING_MS);
    }
    document.body.dataset.loaded = "true";
  } catch (error) {
    page.showError(error);
  }
}

// ----------------------------------------------------------------------------- tabs

function viewTasks(view) {
  return $(`#view-${view}`).dataset.tasks.split(" ");
}

function showView(view) {
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
    tab.classList.toggle("active", tab.dataset.view === view);
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  }
  for (const section of document.querySelectorAll(".view")) {
    section.classList.toggle("active", section.id === `view-${view}`);
  }
  // A view for other tasks than the selected endpoint's picks the first endpoint it fits.
  const tasks = viewTasks(view);
  const endpoint = page.selected();
  if (endpoint && !tasks.includes("*") && !tasks.includes(endpoint.task)) {
    const fitting = page.withTask(tasks)[0];
    if (fitting) page.select(fitting.name);
  }
}

function currentView() {
  return document.querySelector(".tabs .active").dataset.view;
}

for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
  tab.addEventListener("click", () => showView(tab.dataset.view));
}

$("#endpoint-select").addEventListener("change", () => {
  summarize();
  const endpoint = page.selected();
  const tasks = viewTasks(currentView());
  if (endpoint && !tasks.includes("*") && !tasks.includes(endpoint.task)) {
    // The endpoint does not fit this view: go to one it fits.
    showView(endpoint.task === "llm/v1/embeddings" ? "embeddings"
      : [("llm/v1/chat"), "llm/v1/completions"].includes(endpoint.task) ? "chat" : "query");
  }
});
$("#refresh-endpoints").addEventListener("click", refreshEndpoints);
$("#error-banner .dismiss").addEventListener("click", page.clearError);

setupChat(page);
setupCompare(page);
setupQuery(page);
setupEmbeddings(page);
refreshEndpoints();
