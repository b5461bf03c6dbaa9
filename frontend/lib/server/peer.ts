// `next start` gives route handlers no socket, and copies a client's own X-Forwarded-For through unchanged. So the
// Node server stamps each request with the TCP peer's address in a header of ours, overwriting whatever a client
// sent under that name (instrumentation.ts installs this before the first request).
import http from "node:http";

export const PEER_HEADER = "x-ethmumbai-peer";

const state = globalThis as typeof globalThis & { __ethmumbaiPeerStamped?: boolean };

export function stampPeerAddress(): void {
  if (state.__ethmumbaiPeerStamped) return;
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (this: http.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "request") {
      const request = args[0] as http.IncomingMessage;
      request.headers[PEER_HEADER] = request.socket.remoteAddress ?? "";
    }
    return Reflect.apply(emit, this, [event, ...args]) as boolean;
  } as typeof emit;
  state.__ethmumbaiPeerStamped = true;
}

/** Whether this process stamps the peer header (so a value in it came from the socket, never from a client). */
export function peerStamped(): boolean {
  return state.__ethmumbaiPeerStamped === true;
}
