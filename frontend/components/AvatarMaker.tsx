"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import AvatarHistory, { useAvatarHistory } from "@/components/AvatarHistory";
import { avatarPngBlob, PrepareError, prepareImage } from "@/lib/client/images";
import type { JobError, JobView, Progress } from "@/lib/jobs";
import { describeProgress, friendlyError, type Phase, warningNotes } from "@/lib/messages";
import { DEFAULT_STYLE, STYLES } from "@/lib/styles";

const POLL_MS = 500;
const MAX_POLL_FAILURES = 5; // consecutive network errors before giving up
const JOB_DEADLINE_MS = 15 * 60_000; // cold GPU workers can take minutes to start
const ACCEPT = "image/jpeg,image/png,image/webp";

type UiState =
  | { kind: "idle"; note?: string }
  | { kind: "working"; phase: Phase; progress?: Progress; before?: string }
  | { kind: "done"; before: string; after: string; width: number; height: number; notes: string[] }
  | { kind: "error"; error: JobError };

class JobFailed extends Error {
  constructor(readonly error: JobError) {
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

/** Ask the server to cancel a job, without waiting (keepalive: it still goes out while the page unloads). */
function cancelOnServer(id: string): void {
  fetch(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE", keepalive: true }).catch(() => {
    // Best effort: the person has moved on either way, and there is nothing useful to tell them.
  });
}

async function readApi<T>(response: Response): Promise<T> {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new JobFailed(body?.error?.code ? body.error : { code: "UNKNOWN", message: `HTTP ${response.status}` });
  }
  return body as T;
}

/** Poll until the job ends; report queued/running views as they come. Network errors and 5xx are retried. */
type FinalView = Extract<JobView, { state: "completed" | "failed" }>;

async function waitForJob(id: string, signal: AbortSignal, onView: (view: JobView) => void): Promise<FinalView> {
  const deadline = Date.now() + JOB_DEADLINE_MS;
  let failures = 0;
  while (Date.now() < deadline) {
    const response = await fetch(`/api/jobs/${encodeURIComponent(id)}`, { signal, cache: "no-store" }).catch((err) => {
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
  const [style, setStyle] = useState(DEFAULT_STYLE);
  // The server-rendered buttons do nothing until React has hydrated them: keep them disabled until then.
  const [hydrated, setHydrated] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const cameraInput = useRef<HTMLInputElement>(null);
  const chooseButton = useRef<HTMLButtonElement>(null);
  const resultHeading = useRef<HTMLHeadingElement>(null);
  const errorHeading = useRef<HTMLHeadingElement>(null);
  const abort = useRef<AbortController | null>(null);
  const jobId = useRef<string | null>(null); // the job this page waits for, until it ends
  const objectUrls = useRef<string[]>([]);
  const focusChooser = useRef(false);
  const history = useAvatarHistory();
  const addToHistory = history.add;

  const makeUrl = (blob: Blob) => {
    const url = URL.createObjectURL(blob);
    objectUrls.current.push(url);
    return url;
  };

  const releaseUrls = () => {
    objectUrls.current.forEach((url) => URL.revokeObjectURL(url));
    objectUrls.current = [];
  };

  useEffect(() => {
    setHydrated(true);
    return () => {
      abort.current?.abort();
      releaseUrls();
    };
  }, []);

  // Move focus to what changed, so keyboard and screen-reader users land on the result, the error, or (after
  // "Make another") the photo chooser again.
  useEffect(() => {
    if (state.kind === "done") resultHeading.current?.focus();
    if (state.kind === "error") errorHeading.current?.focus();
    if (state.kind === "idle" && focusChooser.current) {
      focusChooser.current = false;
      chooseButton.current?.focus();
    }
  }, [state.kind]);

  const start = useCallback(async (file: File) => {
    abort.current?.abort();
    releaseUrls();
    const controller = new AbortController();
    abort.current = controller;
    const { signal } = controller;
    try {
      setState({ kind: "working", phase: "preparing" });
      const prepared = await prepareImage(file);
      const before = makeUrl(prepared.blob);
      setState({ kind: "working", phase: "uploading", before });
      const { id } = await readApi<{ id: string }>(
        await fetch("/api/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ image: prepared.base64, style }),
          signal,
        }),
      );
      jobId.current = id;
      setState({ kind: "working", phase: "queued", before });
      const view = await waitForJob(id, signal, (update) =>
        setState({
          kind: "working",
          phase: update.state === "running" ? "running" : "queued",
          progress: update.state === "running" ? update.progress : undefined,
          before,
        }),
      );
      jobId.current = null; // ended: nothing left to cancel
      if (view.state === "failed") throw new JobFailed(view.error);
      const { image, format, width, height, seed, workflow_version: workflowVersion, warnings } = view.result;
      const png = await avatarPngBlob(image, format);
      signal.throwIfAborted(); // cancelled while the avatar was decoded: keep nothing, add nothing to history
      setState({ kind: "done", before, after: makeUrl(png), width, height, notes: warningNotes(warnings) });
      void addToHistory({ createdAt: Date.now(), png, width, height, seed, workflowVersion });
    } catch (err) {
      if (signal.aborted) return;
      // The page stopped waiting (timeout, lost connection): cancel the job rather than let it run unseen.
      if (jobId.current) cancelOnServer(jobId.current);
      jobId.current = null;
      const error =
        err instanceof JobFailed
          ? err.error
          : err instanceof PrepareError
            ? { code: err.code, message: "" }
            : { code: "NETWORK", message: "" };
      setState({ kind: "error", error });
    }
  }, [addToHistory, style]);

  const onFiles = (files: FileList | null) => {
    const file = files?.[0];
    if (file) void start(file);
  };

  // Stop waiting at once and tell the server; the page is ready for another photo.
  const cancel = useCallback(() => {
    const id = jobId.current;
    jobId.current = null;
    abort.current?.abort();
    if (id) cancelOnServer(id);
    releaseUrls();
    focusChooser.current = true;
    setState({ kind: "idle", note: "Cancelled" });
  }, []);

  // Leaving or reloading the page abandons the job: cancel it, so that it stops costing GPU time. (pagehide, not
  // unload: it also fires on mobile and for pages kept in the back-forward cache, which then come back cancelled.)
  useEffect(() => {
    const onPageHide = () => {
      if (jobId.current) cancel();
    };
    window.addEventListener("pagehide", onPageHide);
    return () => window.removeEventListener("pagehide", onPageHide);
  }, [cancel]);

  const reset = () => {
    abort.current?.abort();
    releaseUrls();
    focusChooser.current = true;
    setState({ kind: "idle" });
  };

  return (
    <div className="maker">
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
          <fieldset className="styles">
            <legend>Style</legend>
            {STYLES.map((option) => (
              <label key={option.name} className="styles__option" title={option.description}>
                <input
                  type="radio"
                  name="style"
                  value={option.name}
                  checked={style === option.name}
                  onChange={() => setStyle(option.name)}
                />
                {option.label}
              </label>
            ))}
          </fieldset>
          <p className="fineprint">
            JPEG, PNG or WebP, up to 25 MB. Resized in your browser to 2048 px; location data is removed.
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
        <ProgressPanel phase={state.phase} progress={state.progress} before={state.before} onCancel={cancel} />
      )}

      {state.kind === "done" && (
        <section aria-labelledby="result-heading" className="panel result">
          <h2 id="result-heading" ref={resultHeading} tabIndex={-1}>
            Your ETHMumbai avatar
          </h2>
          <div className="compare">
            <figure>
              <img src={state.before} alt="Your photo, before" />
              <figcaption>Before</figcaption>
            </figure>
            <figure>
              <img src={state.after} alt="Your ETHMumbai avatar" data-testid="avatar-result" />
              <figcaption>After{state.width > 0 && ` · ${state.width}×${state.height}`}</figcaption>
            </figure>
          </div>
          {state.notes.map((note) => (
            <p key={note} className="result__note" data-testid="result-note">
              {note}
            </p>
          ))}
          <div className="actions">
            <a className="button button--primary" href={state.after} download="ethmumbai-avatar.png">
              Download PNG
            </a>
            <button type="button" className="button button--secondary" onClick={reset}>
              Make another
            </button>
          </div>
        </section>
      )}

      {state.kind === "error" && (
        <section role="alert" aria-labelledby="error-heading" className="panel error">
          <h2 id="error-heading" ref={errorHeading} tabIndex={-1}>
            That didn't work
          </h2>
          <p className="error__message" data-testid="error-message" data-code={state.error.code}>
            {friendlyError(state.error.code)}
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

      <AvatarHistory {...history} />
    </div>
  );
}

function ProgressPanel({
  phase,
  progress,
  before,
  onCancel,
}: {
  phase: Phase;
  progress?: Progress;
  before?: string;
  onCancel: () => void;
}) {
  const { label, detail, percent } = describeProgress(phase, progress);
  // Only once the server has the job (queued or running): before that there is nothing to cancel.
  const cancellable = phase === "queued" || phase === "running";
  return (
    <section aria-labelledby="progress-heading" className="panel progress" aria-busy="true">
      <h2 id="progress-heading">Making your avatar</h2>
      <div className="progress__body">
        {before && <img className="progress__thumb" src={before} alt="Your photo" />}
        <div className="progress__status">
          <p id="progress-label" role="status" aria-live="polite" data-testid="progress-label" data-phase={phase}>
            {label}
          </p>
          <progress aria-labelledby="progress-label" max={100} value={percent} />
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
