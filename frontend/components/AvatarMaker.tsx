"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import AvatarHistory, { useAvatarHistory } from "@/components/AvatarHistory";
import LookChooser, { loadPicks, type Picks, savePicks } from "@/components/LookChooser";
import { backgroundLabel, CHOICES, MAX_SEED } from "@/lib/choices";
import { avatarBlobs, PrepareError, prepareImage, type PreparedImage } from "@/lib/client/images";
import type { JobError, JobView, NewJob, Progress, ServiceHealth } from "@/lib/jobs";
import { DEMO_WARNING, describeProgress, facesLine, friendlyError, friendlyWarning, type Phase } from "@/lib/messages";

const POLL_MS = 500;
const HEALTH_POLL_MS = 2_000;
const MAX_POLL_FAILURES = 5; // consecutive network errors before giving up
const JOB_DEADLINE_MS = 15 * 60_000; // cold GPU workers can take minutes to start
const WARMUP_DEADLINE_MS = 10 * 60_000; // a local worker loading its models on a CPU
const ACCEPT = "image/jpeg,image/png,image/webp";
const DEMO_KEY = "ethmumbai-avatar-demo"; // sessionStorage: the worker said it runs tiny demo models

interface Photo extends PreparedImage {
  url: string; // object URL of the prepared JPEG ("Before")
}

interface Avatar {
  png: string; // object URLs
  webp: string;
  pngBlob: Blob;
  width: number;
  height: number;
  seed?: number;
  background?: string; // undefined: the style's own
  style?: string;
  facesFound?: number; // the worker's faces_found
  faceIndex: number; // the face used, in the worker's order (0: the most prominent)
  warnings: JobError[];
}

type UiState =
  | { kind: "idle"; note?: string }
  | { kind: "working"; phase: Phase; progress?: Progress; before?: string }
  | { kind: "done"; before: string; avatar: Avatar }
  | { kind: "error"; error: JobError; retryAfterS?: number };

class JobFailed extends Error {
  constructor(
    readonly error: JobError,
    readonly retryAfterS?: number,
  ) {
    super(error.code);
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/** A seed a JS number holds exactly, from the browser's random source. */
function randomSeed(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return ((high % Math.floor(MAX_SEED / 2 ** 32)) * 2 ** 32 + low) % MAX_SEED;
}

/** The next face of a group photo, in the worker's order, back to the first after the last it takes. */
function nextFace(avatar: Avatar): number {
  const faces = Math.min(avatar.facesFound ?? 1, CHOICES.maxFaceIndex + 1);
  return (avatar.faceIndex + 1) % faces;
}

function jobUrl(id: string): string {
  return `/api/jobs/${encodeURIComponent(id)}`;
}

/** Ask the server to cancel a job, without waiting (keepalive: it still goes out while the page unloads). */
function cancelOnServer(job: NewJob): void {
  fetch(jobUrl(job.id), { method: "DELETE", keepalive: true, headers: { "X-Job-Token": job.token } }).catch(() => {
    // Best effort: the person has moved on either way, and there is nothing useful to tell them.
  });
}

async function readApi<T>(response: Response): Promise<T> {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const retryAfter = Number(response.headers.get("Retry-After")) || undefined;
    throw new JobFailed(body?.error?.code ? body.error : { code: "UNKNOWN", message: `HTTP ${response.status}` },
      retryAfter);
  }
  return body as T;
}

async function fetchHealth(signal?: AbortSignal): Promise<ServiceHealth | null> {
  const response = await fetch("/api/health", { cache: "no-store", signal }).catch(() => null);
  return response?.ok ? ((await response.json().catch(() => null)) as ServiceHealth | null) : null;
}

/** Poll until the job ends; report queued/running views as they come. Network errors and 5xx are retried. */
type FinalView = Extract<JobView, { state: "completed" | "failed" }>;

async function waitForJob(job: NewJob, signal: AbortSignal, onView: (view: JobView) => void): Promise<FinalView> {
  const deadline = Date.now() + JOB_DEADLINE_MS;
  let failures = 0;
  while (Date.now() < deadline) {
    const response = await fetch(jobUrl(job.id), {
      signal,
      cache: "no-store",
      headers: { "X-Job-Token": job.token },
    }).catch((err) => {
      if (signal.aborted) throw err;
      return null;
    });
    if (!response || response.status >= 500) {
      if (++failures < MAX_POLL_FAILURES) {
        await sleep(POLL_MS * 2 ** failures, signal);
        continue;
      }
      if (!response) throw new JobFailed({ code: "NETWORK", message: "" });
      // else: readApi turns the last 5xx into its coded error
    } else {
      failures = 0;
    }
    const view = await readApi<JobView>(response);
    if (view.state === "completed" || view.state === "failed") return view;
    onView(view);
    await sleep(POLL_MS, signal);
  }
  throw new JobFailed({ code: "TIMEOUT", message: "" });
}

export default function AvatarMaker() {
  const [state, setState] = useState<UiState>({ kind: "idle" });
  const [dragging, setDragging] = useState(false);
  // The server-rendered buttons do nothing until React has hydrated them: keep them disabled until then.
  const [hydrated, setHydrated] = useState(false);
  const [picks, setPicks] = useState<Picks>({});
  const [health, setHealth] = useState<ServiceHealth | null>(null);
  const [demo, setDemo] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const cameraInput = useRef<HTMLInputElement>(null);
  const chooseButton = useRef<HTMLButtonElement>(null);
  const resultPanel = useRef<HTMLElement>(null);
  const resultHeading = useRef<HTMLHeadingElement>(null);
  const errorHeading = useRef<HTMLHeadingElement>(null);
  const abort = useRef<AbortController | null>(null);
  const job = useRef<NewJob | null>(null); // the job this page waits for, until it ends
  const photo = useRef<Photo | null>(null); // the prepared photo, kept for "Try another" and "Same again"
  const resultUrls = useRef<string[]>([]);
  const picksRef = useRef<Picks>({});
  const healthRef = useRef<ServiceHealth | null>(null);
  const focusChooser = useRef(false);
  const history = useAvatarHistory();
  const addToHistory = history.add;

  const releaseResult = () => {
    resultUrls.current.forEach((url) => URL.revokeObjectURL(url));
    resultUrls.current = [];
  };

  const releasePhoto = () => {
    if (photo.current) URL.revokeObjectURL(photo.current.url);
    photo.current = null;
  };

  const updateHealth = useCallback((next: ServiceHealth | null) => {
    healthRef.current = next;
    setHealth(next);
  }, []);

  useEffect(() => {
    setHydrated(true);
    const saved = loadPicks();
    picksRef.current = saved;
    setPicks(saved);
    setDemo(sessionStorage.getItem(DEMO_KEY) === "1");
    return () => {
      abort.current?.abort();
      releaseResult();
      releasePhoto();
    };
  }, []);

  // Is the worker up? While it warms up the page says so (and holds a photo until it is ready), re-checking.
  useEffect(() => {
    const controller = new AbortController();
    const check = async () => {
      const next = await fetchHealth(controller.signal);
      if (controller.signal.aborted) return;
      updateHealth(next);
      if (next?.state === "warming") await sleep(HEALTH_POLL_MS, controller.signal).then(check, () => undefined);
    };
    void check();
    return () => controller.abort();
  }, [updateHealth]);

  const choose = useCallback((next: Picks) => {
    picksRef.current = next;
    setPicks(next);
    savePicks(next);
  }, []);

  // Move focus to what changed, so keyboard and screen-reader users land on the result, the error, or (after
  // "New photo") the photo chooser again. The result is scrolled to the top: its downloads fit on one screen.
  useEffect(() => {
    if (state.kind === "done") {
      resultPanel.current?.scrollIntoView({ block: "start" });
      resultHeading.current?.focus({ preventScroll: true });
    }
    if (state.kind === "error") errorHeading.current?.focus();
    if (state.kind === "idle" && focusChooser.current) {
      focusChooser.current = false;
      chooseButton.current?.focus();
    }
  }, [state.kind]);

  /** A local worker that is still starting cannot take a job: wait until it can (RunPod queues it instead). */
  const waitUntilReady = useCallback(async (signal: AbortSignal) => {
    const deadline = Date.now() + WARMUP_DEADLINE_MS;
    let current = healthRef.current;
    while (current?.state === "warming" && !current.queues) {
      if (Date.now() > deadline) throw new JobFailed({ code: "WARMING_UP", message: "" });
      await sleep(HEALTH_POLL_MS, signal);
      current = await fetchHealth(signal);
      updateHealth(current);
    }
  }, [updateHealth]);

  /** Draw an avatar of the prepared photo with the current picks; `seed` undefined: the endpoint's default;
   * `faceIndex`: which face of a group photo (0: the worker's choice, the most prominent). */
  const render = useCallback(async (source: Photo, seed: number | undefined, faceIndex = 0) => {
    abort.current?.abort();
    releaseResult();
    const controller = new AbortController();
    abort.current = controller;
    const { signal } = controller;
    const before = source.url;
    const chosen = picksRef.current;
    try {
      if (healthRef.current?.state === "warming" && !healthRef.current.queues) {
        setState({ kind: "working", phase: "warming", before });
        await waitUntilReady(signal);
      }
      setState({ kind: "working", phase: "uploading", before });
      // The preselected style (the demo's is "photo") is sent too, so the avatar is drawn in the style the page names.
      const body = { image: source.base64, ...chosen, style: chosen.style ?? CHOICES.styles?.default,
                     ...(seed !== undefined && { seed }), ...(faceIndex > 0 && { face_index: faceIndex }) };
      const created = await readApi<NewJob>(
        await fetch("/api/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
          signal,
        }),
      );
      job.current = created;
      setState({ kind: "working", phase: "queued", before });
      const view = await waitForJob(created, signal, (update) =>
        setState({
          kind: "working",
          phase: update.state === "running" ? "running" : "queued",
          progress: update.state === "running" ? update.progress : undefined,
          before,
        }),
      );
      job.current = null; // ended: nothing left to cancel
      if (view.state === "failed") throw new JobFailed(view.error);
      const result = view.result;
      const { png, webp } = await avatarBlobs(result.image, result.format);
      signal.throwIfAborted(); // cancelled while the avatar was decoded: keep nothing, add nothing to history
      const urls = [URL.createObjectURL(png), URL.createObjectURL(webp)];
      resultUrls.current.push(...urls);
      const warnings = result.warnings ?? [];
      if (warnings.some((warning) => warning.code === DEMO_WARNING)) {
        sessionStorage.setItem(DEMO_KEY, "1");
        setDemo(true);
      }
      const style = chosen.style ?? CHOICES.styles?.default;
      setState({
        kind: "done",
        before,
        avatar: {
          png: urls[0],
          webp: urls[1],
          pngBlob: png,
          width: result.width,
          height: result.height,
          seed: result.seed,
          style,
          background: chosen.background ?? (CHOICES.styles ? undefined : CHOICES.backgrounds.default),
          facesFound: result.faces_found,
          faceIndex,
          warnings,
        },
      });
      void addToHistory({
        createdAt: Date.now(),
        png,
        width: result.width,
        height: result.height,
        seed: result.seed,
        workflowVersion: result.workflow_version,
      });
    } catch (err) {
      if (signal.aborted) return;
      // The page stopped waiting (timeout, lost connection): cancel the job rather than let it run unseen.
      if (job.current) cancelOnServer(job.current);
      job.current = null;
      if (err instanceof JobFailed) setState({ kind: "error", error: err.error, retryAfterS: err.retryAfterS });
      else if (err instanceof PrepareError) setState({ kind: "error", error: { code: err.code, message: "" } });
      else setState({ kind: "error", error: { code: "NETWORK", message: "" } });
    }
  }, [addToHistory, waitUntilReady]);

  const start = useCallback(async (file: File) => {
    abort.current?.abort();
    releaseResult();
    releasePhoto();
    setState({ kind: "working", phase: "preparing" });
    let prepared: PreparedImage;
    try {
      prepared = await prepareImage(file);
    } catch (err) {
      const code = err instanceof PrepareError ? err.code : "FILE_UNREADABLE";
      setState({ kind: "error", error: { code, message: "" } });
      return;
    }
    photo.current = { ...prepared, url: URL.createObjectURL(prepared.blob) };
    await render(photo.current, undefined);
  }, [render]);

  const onFiles = (files: FileList | null) => {
    const file = files?.[0];
    if (file) void start(file);
  };

  // Stop waiting at once and tell the server; the page is ready for another photo.
  const cancel = useCallback(() => {
    const current = job.current;
    job.current = null;
    abort.current?.abort();
    if (current) cancelOnServer(current);
    releaseResult();
    releasePhoto();
    focusChooser.current = true;
    setState({ kind: "idle", note: "Cancelled" });
  }, []);

  // Leaving or reloading the page abandons the job: cancel it, so that it stops costing GPU time. (pagehide, not
  // unload: it also fires on mobile and for pages kept in the back-forward cache, which then come back cancelled.)
  useEffect(() => {
    const onPageHide = () => {
      if (job.current) cancel();
    };
    window.addEventListener("pagehide", onPageHide);
    return () => window.removeEventListener("pagehide", onPageHide);
  }, [cancel]);

  const reset = () => {
    abort.current?.abort();
    releaseResult();
    releasePhoto();
    focusChooser.current = true;
    setState({ kind: "idle" });
  };

  // Another seed or the same one keeps the face chosen; a new photo starts from the most prominent again.
  const again = (seed: number | undefined, faceIndex: number) => {
    if (photo.current) void render(photo.current, seed, faceIndex);
  };

  const working = state.kind === "working";

  return (
    <div className="maker">
      {health && health.state !== "ready" && (
        <p className="service-status" role="status" data-testid="service-status" data-state={health.state}>
          {health.state === "warming"
            ? health.queues
              ? "The avatar service is warming up: your first avatar may take a minute or two longer."
              : "The avatar service is warming up. Choose your photo; it goes as soon as the service is ready."
            : "The avatar service isn't answering right now. Please try again later."}
        </p>
      )}
      {demo && state.kind !== "done" && <DemoNotice />}

      {state.kind === "idle" && (
        <section
          aria-labelledby="upload-heading"
          className={`dropzone${dragging ? " dropzone--active" : ""}`}
          onDragOver={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(event) => {
            event.preventDefault();
            setDragging(false);
            onFiles(event.dataTransfer.files);
          }}
        >
          <h2 id="upload-heading">Your photo</h2>
          {state.note && (
            <p id="status-note" className="status-note" data-testid="status-note">
              {state.note}
            </p>
          )}
          <p className="hint">Drag a photo here, or choose one. A clear, front-facing face works best.</p>
          <div className="actions">
            <button
              ref={chooseButton}
              type="button"
              className="button button--primary"
              disabled={!hydrated}
              // Focus lands here after a cancel: the note is read out with the button.
              aria-describedby={state.note ? "status-note" : undefined}
              onClick={() => fileInput.current?.click()}
            >
              Choose a photo
            </button>
            <button
              type="button"
              className="button button--secondary touch-only"
              disabled={!hydrated}
              onClick={() => cameraInput.current?.click()}
            >
              Take a selfie
            </button>
          </div>
          <p className="fineprint">
            JPEG, PNG or WebP, up to 25 MB. Resized in your browser (at most 2048 px); location data is removed.
          </p>
          <input
            ref={fileInput}
            id="photo-file"
            data-testid="photo-input"
            type="file"
            accept={ACCEPT}
            hidden
            onChange={(event) => {
              onFiles(event.target.files);
              event.target.value = "";
            }}
          />
          <input
            ref={cameraInput}
            type="file"
            accept={ACCEPT}
            capture="user"
            hidden
            onChange={(event) => {
              onFiles(event.target.files);
              event.target.value = "";
            }}
          />
        </section>
      )}

      {state.kind === "working" && (
        <ProgressPanel
          phase={state.phase}
          progress={state.progress}
          before={state.before}
          coldStart={health?.state === "warming" && health.queues}
          onCancel={cancel}
        />
      )}

      {state.kind === "done" && (
        <ResultPanel
          panelRef={resultPanel}
          headingRef={resultHeading}
          before={state.before}
          avatar={state.avatar}
          demo={demo}
          onTryAnother={() => again(randomSeed(), state.avatar.faceIndex)}
          onSameAgain={() => again(state.avatar.seed, state.avatar.faceIndex)}
          onAnotherFace={() => again(state.avatar.seed, nextFace(state.avatar))}
          onNewPhoto={reset}
        />
      )}

      {state.kind === "error" && (
        <section role="alert" aria-labelledby="error-heading" className="panel error">
          <h2 id="error-heading" ref={errorHeading} tabIndex={-1}>
            That didn't work
          </h2>
          <p className="error__message" data-testid="error-message" data-code={state.error.code}>
            {friendlyError(state.error.code, state.retryAfterS)}
          </p>
          {state.error.message && (
            <details>
              <summary>Details</summary>
              <p>
                <code>{state.error.code}</code>: {state.error.message}
              </p>
            </details>
          )}
          <div className="actions">
            <button type="button" className="button button--primary" onClick={reset}>
              Try another photo
            </button>
          </div>
        </section>
      )}

      <LookChooser picks={picks} onChange={choose} disabled={!hydrated || working} />

      <AvatarHistory {...history} />
    </div>
  );
}

function DemoNotice() {
  return (
    <p className="demo-notice" role="note" data-testid="demo-notice">
      <strong>Demo mode.</strong> This server runs tiny test models instead of the real ones: the Photo style (the
      demo&apos;s default) shows your photo cut out on the ETHMumbai background, the other styles give noise, not a
      real avatar.
    </p>
  );
}

function ResultPanel({
  panelRef,
  headingRef,
  before,
  avatar,
  demo,
  onTryAnother,
  onSameAgain,
  onAnotherFace,
  onNewPhoto,
}: {
  panelRef: React.RefObject<HTMLElement | null>;
  headingRef: React.RefObject<HTMLHeadingElement | null>;
  before: string;
  avatar: Avatar;
  demo: boolean;
  onTryAnother: () => void;
  onSameAgain: () => void;
  onAnotherFace: () => void;
  onNewPhoto: () => void;
}) {
  const [shareFile, setShareFile] = useState<File | null>(null);
  useEffect(() => {
    // Web Share with a file: phones mostly; elsewhere the button stays away.
    const file = new File([avatar.pngBlob], "ethmumbai-avatar.png", { type: "image/png" });
    setShareFile(typeof navigator.canShare === "function" && navigator.canShare({ files: [file] }) ? file : null);
  }, [avatar.pngBlob]);
  const style = CHOICES.styles?.presets.find((preset) => preset.name === avatar.style);
  const warnings = avatar.warnings.map((warning) => friendlyWarning(warning.code)).filter(Boolean);
  return (
    <section ref={panelRef} aria-labelledby="result-heading" className="panel result">
      <h2 id="result-heading" ref={headingRef} tabIndex={-1}>
        Your ETHMumbai avatar
      </h2>
      {demo && <DemoNotice />}
      <div className="result__body">
        <img className="result__square" src={avatar.png} alt="Your ETHMumbai avatar" data-testid="avatar-result" />
        <div className="result__side">
          <div className="result__previews">
            <figure>
              <img className="result__round" src={avatar.png} alt="" data-testid="avatar-round" />
              <figcaption>As a profile picture</figcaption>
            </figure>
            <figure>
              <img className="result__before" src={before} alt="Your photo, before" />
              <figcaption>Before</figcaption>
            </figure>
          </div>
          <p className="result__meta" data-testid="result-meta">
            {style && <>{style.label} · </>}
            {avatar.background ? `${backgroundLabel(avatar.background)} background` : "the style's background"}
            {avatar.width > 0 && ` · ${avatar.width}×${avatar.height}`}
            {avatar.seed !== undefined && (
              <>
                {" · "}Seed <span data-testid="seed">{avatar.seed}</span>
              </>
            )}
          </p>
          {(avatar.facesFound ?? 0) > 1 && (
            <p className="result__faces" data-testid="faces">
              {facesLine(avatar.facesFound ?? 0, avatar.faceIndex)}{" "}
              <button type="button" className="button button--secondary" onClick={onAnotherFace}>
                Use another face
              </button>
            </p>
          )}
          {warnings.length > 0 && (
            <ul className="result__warnings" data-testid="warnings">
              {warnings.map((text) => (
                <li key={text}>{text}</li>
              ))}
            </ul>
          )}
          <div className="actions result__downloads">
            <a className="button button--primary" href={avatar.png} download="ethmumbai-avatar.png">
              Download PNG
            </a>
            <a className="button button--secondary" href={avatar.webp} download="ethmumbai-avatar.webp">
              Download WebP
            </a>
            {shareFile && (
              <button
                type="button"
                className="button button--secondary"
                onClick={() => navigator.share({ files: [shareFile], title: "My ETHMumbai avatar" }).catch(() => {})}
              >
                Share
              </button>
            )}
          </div>
          <div className="actions result__again">
            <button type="button" className="button button--secondary" onClick={onTryAnother}>
              Try another
            </button>
            {avatar.seed !== undefined && (
              <button type="button" className="button button--secondary" onClick={onSameAgain}>
                Same again
              </button>
            )}
            <button type="button" className="button button--secondary" onClick={onNewPhoto}>
              New photo
            </button>
          </div>
          <p className="fineprint">
            Try another draws this photo again with a new seed; Same again redraws seed {avatar.seed ?? "—"} with
            the look chosen below.
          </p>
        </div>
      </div>
    </section>
  );
}

function ProgressPanel({
  phase,
  progress,
  before,
  coldStart,
  onCancel,
}: {
  phase: Phase;
  progress?: Progress;
  before?: string;
  coldStart: boolean;
  onCancel: () => void;
}) {
  const { label, detail, percent } = describeProgress(phase, progress, coldStart);
  // Once the server has the job (queued or running), or while the page holds the photo for a warming worker.
  const cancellable = phase === "queued" || phase === "running" || phase === "warming";
  return (
    <section aria-labelledby="progress-heading" className="panel progress" aria-busy="true">
      <h2 id="progress-heading">Making your avatar</h2>
      <div className="progress__body">
        {before && <img className="progress__thumb" src={before} alt="Your photo" />}
        <div className="progress__status">
          <p id="progress-label" role="status" aria-live="polite" data-testid="progress-label" data-phase={phase}>
            {label}
          </p>
          {/* No value where no step is counted: an indeterminate bar rather than a guessed percentage. */}
          <progress aria-labelledby="progress-label" max={100} value={percent} data-testid="progress-bar" />
          {/* Outside the live region: a screen reader hears each stage once, not every step. */}
          <p className="progress__detail" data-testid="progress-detail">
            {detail}
          </p>
        </div>
      </div>
      {cancellable && (
        <div className="actions progress__actions">
          <button type="button" className="button button--secondary" onClick={onCancel}>
            Cancel
          </button>
        </div>
      )}
    </section>
  );
}
