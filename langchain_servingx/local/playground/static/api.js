// HTTP to this server: JSON calls, SSE streams over fetch, serving errors.
// Same-origin requests only; the session cookie (HttpOnly) authenticates them.

/** A failure in the serving error format: HTTP status, error_code and message. */
export class ServingError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  toString() {
    const status = this.status ? `HTTP ${this.status} ` : "";
    return `${status}${this.code}: ${this.message}`;
  }
}

/** The path of an endpoint's native call (or of one served model behind it). */
export function invocationsPath(endpoint, servedModel) {
  const base = `/serving-endpoints/${encodeURIComponent(endpoint)}`;
  return servedModel
    ? `${base}/served-models/${encodeURIComponent(servedModel)}/invocations`
    : `${base}/invocations`;
}

/** The ServingError that an error body (JSON or not) stands for. */
export function errorFromBody(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      return new ServingError(status, body.error_code || "ERROR", body.message || text);
    }
  } catch {
    // not JSON: fall through
  }
  return new ServingError(status, "ERROR", text.slice(0, 500) || "(empty response)");
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text);
  return JSON.parse(text);
}

/** POST a body; the response as JSON (a ServingError when the status is not 2xx). */
export async function postJSON(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  if (!response.ok) throw errorFromBody(response.status, text);
  return JSON.parse(text);
}

/** POST raw text; status, headers, body text and latency, whatever the status. */
export async function postRaw(path, text, signal) {
  const started = performance.now();
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: text,
    signal,
  });
  const body = await response.text();
  return { response, body, ms: performance.now() - started };
}

/**
 * POST a streaming request and yield each `data:` event's JSON until `[DONE]`.
 * An error status, or an error event in the stream, throws a ServingError.
 */
export async function* streamEvents(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw errorFromBody(response.status, await response.text());
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let done = false;
  try {
    while (true) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value;
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();
      for (const event of events) {
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue; // a keep-alive comment
        if (data === "[DONE]") {
          done = true;
          return;
        }
        const chunk = JSON.parse(data);
        if (chunk.error_code && !chunk.choices) {
          // An error told in the stream, after a 200: the status says nothing.
          throw new ServingError(0, chunk.error_code, chunk.message || "");
        }
        yield chunk;
      }
    }
  } finally {
    if (!done) reader.cancel().catch(() => {});
  }
  if (!done) throw new ServingError(0, "STREAM_INCOMPLETE", "The stream ended without [DONE].");
}
