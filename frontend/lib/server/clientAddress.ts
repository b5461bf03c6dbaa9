import "server-only";

import { peerStamped, PEER_HEADER } from "@/lib/server/peer";
import { ConfigError } from "@/lib/server/runpod";

// Who the client is, by a configured trust model, never by a header the client alone controls:
// - on Vercel (VERCEL=1): x-real-ip, which Vercel's edge sets to the client's address, replacing any a client sent;
// - TRUSTED_PROXY_HOPS=N (nginx, a load balancer...): the N-th X-Forwarded-For entry from the right, the address the
//   outermost of the N trusted proxies saw (each appends the peer it saw; what a client wrote stays further left);
// - otherwise the TCP peer of this server (lib/server/peer.ts).
export type TrustModel = { kind: "vercel" } | { kind: "proxies"; hops: number } | { kind: "socket" };

const MAX_HOPS = 10;

export function trustModel(env: NodeJS.ProcessEnv = process.env): TrustModel {
  const raw = env.TRUSTED_PROXY_HOPS?.trim();
  if (raw) {
    if (!/^\d+$/.test(raw) || Number(raw) > MAX_HOPS) {
      throw new ConfigError(`TRUSTED_PROXY_HOPS must be a whole number from 0 to ${MAX_HOPS}`);
    }
    return Number(raw) > 0 ? { kind: "proxies", hops: Number(raw) } : { kind: "socket" };
  }
  return env.VERCEL === "1" ? { kind: "vercel" } : { kind: "socket" };
}

function peer(request: Request): string {
  if (!peerStamped()) throw new ConfigError("the client address is unknown: instrumentation.ts did not run");
  return request.headers.get(PEER_HEADER) || "unknown";
}

export function clientAddress(request: Request, model: TrustModel = trustModel()): string {
  switch (model.kind) {
    case "vercel":
      return request.headers.get("x-real-ip") || "unknown";
    case "proxies": {
      const hops = (request.headers.get("x-forwarded-for") ?? "").split(",").map((hop) => hop.trim());
      // Fewer entries than trusted proxies: the request did not come through them all, so the socket is the client.
      return hops.length >= model.hops && hops.at(-model.hops) ? (hops.at(-model.hops) as string) : peer(request);
    }
    case "socket":
      return peer(request);
  }
}
