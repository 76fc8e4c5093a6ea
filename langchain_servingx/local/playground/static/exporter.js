// Export the conversation and parameters as runnable code: ChatServing (or ServingLLM)
// Python, curl, or the OpenAI Python client. The token is always read from
// DATABRICKS_TOKEN, never written into the code.
import { CHAT, COMPLETIONS, generationBody } from "./reply.js";

const LINE = 88;

/** A JSON value as a one-line Python literal (JSON string escapes are valid Python). */
function inline(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
  const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${inline(v)}`);
  return `{${entries.join(", ")}}`;
}

/** A JSON value as a Python literal, one line when it fits, indented otherwise. */
export function python(value, indent = 0) {
  const pad = " ".repeat(indent);
  const inner = " ".repeat(indent + 4);
  const short = inline(value);
  if (typeof value !== "object" || value === null || indent + short.length <= LINE - 24) {
    return short;
  }
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + python(v, indent + 4)).join(",\n")},\n${pad}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  const body = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${python(v, indent + 4)}`);
  return `{\n${body.join(",\n")},\n${pad}}`;
}

const ENV_NOTE = (host) => [
  "# Reads DATABRICKS_HOST and DATABRICKS_TOKEN from the environment, e.g.",
  `#   export DATABRICKS_HOST=${host}`,
  "#   export DATABRICKS_TOKEN=...  # as servingx-local printed it",
];

function kwargs(entries, indent) {
  const pad = " ".repeat(indent);
  return entries.map(([k, v]) => `${pad}${k}=${python(v, indent)},`);
}

function servingPython({ endpoint, task, host, messages, params }) {
  const sampling = ["temperature", "max_tokens", "top_p", "stop"]
    .filter((k) => params[k] !== undefined)
    .map((k) => [k, params[k]]);
  if (task === COMPLETIONS) {
    const prompt = generationBody(task, messages, {}, false).prompt;
    return [
      ...ENV_NOTE(host),
      "from langchain_servingx import ServingLLM",
      "",
      "llm = ServingLLM(",
      ...kwargs([["endpoint", endpoint], ...sampling], 4),
      ")",
      `print(llm.invoke(${python(prompt)}))`,
      "",
    ].join("\n");
  }
  const lines = [
    ...ENV_NOTE(host),
    "from langchain_servingx import ChatServing",
    "",
    "llm = ChatServing(",
    ...kwargs([["endpoint", endpoint], ...sampling], 4),
    ")",
  ];
  if (params.tools) {
    const choice = typeof params.tool_choice === "object"
      ? params.tool_choice.function.name
      : params.tool_choice;
    lines.push(`tools = ${python(params.tools)}`);
    lines.push(`llm = llm.bind_tools(tools, tool_choice=${python(choice)})`);
  }
  if (params.response_format) {
    lines.push(`llm = llm.bind(response_format=${python(params.response_format)})`);
  }
  lines.push(
    `messages = ${python(generationBody(CHAT, messages, {}, false).messages)}`,
    "reply = llm.invoke(messages)",
    "print(reply.text)",
  );
  if (params.tools) lines.push("print(reply.tool_calls)");
  return `${lines.join("\n")}\n`;
}

function curl({ endpoint, task, messages, params }) {
  const body = generationBody(task, messages, params, false);
  const path = `/serving-endpoints/${encodeURIComponent(endpoint)}/invocations`;
  return [
    `curl -sS "$DATABRICKS_HOST${path}" \\`,
    '  -H "Authorization: Bearer $DATABRICKS_TOKEN" \\',
    '  -H "Content-Type: application/json" \\',
    "  --data-binary @- <<'JSON'",
    JSON.stringify(body, null, 2),
    "JSON",
    "",
  ].join("\n");
}

function openaiPython({ endpoint, task, host, messages, params }) {
  const body = generationBody(task, messages, params, false);
  const call = task === COMPLETIONS ? "client.completions.create" : "client.chat.completions.create";
  const answer = task === COMPLETIONS
    ? "print(response.choices[0].text)"
    : "print(response.choices[0].message)";
  return [
    ...ENV_NOTE(host),
    "import os",
    "",
    "from openai import OpenAI",
    "",
    "client = OpenAI(",
    '    api_key=os.environ["DATABRICKS_TOKEN"],',
    '    base_url=os.environ["DATABRICKS_HOST"] + "/serving-endpoints",',
    ")",
    `response = ${call}(`,
    ...kwargs([["model", endpoint], ...Object.entries(body)], 4),
    ")",
    answer,
    "",
  ].join("\n");
}

/** The code for `format` ("python", "curl" or "openai"). */
export function exportCode(format, conversation) {
  if (format === "curl") return curl(conversation);
  if (format === "openai") return openaiPython(conversation);
  return servingPython(conversation);
}
