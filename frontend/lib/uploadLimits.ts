// The upload's size, shared by the page (which fits the photo under it) and the route (which refuses more).
// Vercel functions take request bodies up to 4.5 MB; the route stops at 4.0 MB, and the page aims lower still.

/** The most the job route reads of a request body; Content-Length above it is refused before reading anything. */
export const MAX_BODY_BYTES = 4_000_000;
/** The page's budget for the photo's base64 in the body: the JPEG is re-encoded smaller until it fits. */
export const UPLOAD_BASE64_BUDGET = 3_600_000;
