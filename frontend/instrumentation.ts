// Runs once per server process, before it serves requests (Next.js instrumentation hook).
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { stampPeerAddress } = await import("@/lib/server/peer");
    stampPeerAddress();
  }
}
