// uWebSockets.js answers a request whose headers (request line included) pass 4 KiB with its own
// 431 HTML page, before any of our handlers runs. Tokens travel in those headers — the upgrade's
// query string or Authorization header, /sse's query string — and the verifier accepts them up to
// 8 KiB (a channels claim of a few hundred patterns), so the default left such tokens unusable on
// every transport. uWS reads UWS_HTTP_MAX_HEADERS_SIZE once, when its addon is loaded, from the
// process environment: this module must be evaluated before the first import of uWebSockets.js
// (server.ts imports it first), in the main thread (a worker's process.env is a copy the addon never
// sees; the addon is loaded once per process, by the main thread's supervisor).

/** Room for an 8 KiB token plus the request line, cookies and the other headers a browser sends. */
export const HTTP_MAX_HEADERS_SIZE = 16 * 1024;

// An operator's own setting wins (a proxy in front may allow more, or less).
if (process.env.UWS_HTTP_MAX_HEADERS_SIZE === undefined) process.env.UWS_HTTP_MAX_HEADERS_SIZE = String(HTTP_MAX_HEADERS_SIZE);
