"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import {
  addAvatar,
  clearAvatars,
  deleteAvatar,
  HISTORY_LIMIT,
  historyFileName,
  listAvatars,
  openHistory,
  type HistoryEntry,
  type NewHistoryEntry,
} from "@/lib/client/history";
import styles from "./AvatarHistory.module.css";

// "loading" until IndexedDB answers (nothing is shown meanwhile), "off" where the browser cannot keep it.
type Entries = HistoryEntry[] | "loading" | "off";

export interface AvatarHistoryState {
  entries: Entries;
  add: (entry: NewHistoryEntry) => Promise<void>;
  remove: (id: number) => Promise<void>;
  clear: () => Promise<void>;
}

const succeeded = (done: Promise<void>) => done.then(() => true, () => false);

/** The history kept on this device. Changes update the list in place, so unchanged items keep their blob URLs. */
export function useAvatarHistory(): AvatarHistoryState {
  const db = useRef<IDBDatabase | null>(null);
  const [entries, setEntries] = useState<Entries>("loading");

  useEffect(() => {
    let live = true;
    void (async () => {
      const opened = await openHistory();
      const list = opened ? await listAvatars(opened).catch(() => null) : null;
      if (!live) return opened?.close();
      db.current = list ? opened : null;
      setEntries(list ?? "off");
    })();
    return () => {
      live = false;
      db.current?.close();
      db.current = null;
    };
  }, []);

  // History is a convenience: a full disk or a failed write must not spoil the page, so failures are dropped.
  const add = useCallback(async (entry: NewHistoryEntry) => {
    if (!db.current) return;
    const saved = await addAvatar(db.current, entry).catch(() => null);
    if (saved) setEntries((list) => (Array.isArray(list) ? [saved, ...list].slice(0, HISTORY_LIMIT) : list));
  }, []);

  const remove = useCallback(async (id: number) => {
    if (db.current && (await succeeded(deleteAvatar(db.current, id)))) {
      setEntries((list) => (Array.isArray(list) ? list.filter((entry) => entry.id !== id) : list));
    }
  }, []);

  const clear = useCallback(async () => {
    if (db.current && (await succeeded(clearAvatars(db.current)))) setEntries([]);
  }, []);

  return { entries, add, remove, clear };
}

// Shown: short. Labels: to the second, so that each button names its own avatar.
const SHORT_WHEN = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "numeric",
  minute: "2-digit",
});
const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export default function AvatarHistory({ entries, remove, clear }: AvatarHistoryState) {
  const heading = useRef<HTMLHeadingElement>(null);
  const list = useRef<HTMLUListElement>(null);
  // After a delete, keyboard focus goes to the delete button now at the same place (or the heading): the one
  // it was on is gone.
  const focusIndex = useRef<number | null>(null);

  useEffect(() => {
    if (focusIndex.current === null) return;
    const buttons = list.current?.querySelectorAll<HTMLButtonElement>("button") ?? [];
    (buttons[Math.min(focusIndex.current, buttons.length - 1)] ?? heading.current)?.focus();
    focusIndex.current = null;
  }, [entries]);

  if (entries === "loading") return null;

  const title = (
    <h2 id="history-heading" ref={heading} tabIndex={-1}>
      Your recent avatars
    </h2>
  );
  if (entries === "off") {
    return (
      <section aria-labelledby="history-heading" className="panel" data-testid="history" data-state="off">
        {title}
        <p className={styles.note}>
          History is off: this browser doesn&apos;t let the page keep avatars here (private browsing?).
        </p>
      </section>
    );
  }

  const onClear = () => {
    if (!window.confirm(`Delete all ${entries.length} avatars from this device?`)) return;
    focusIndex.current = 0;
    void clear();
  };

  return (
    <section aria-labelledby="history-heading" className="panel" data-testid="history" data-state="on">
      <div className={styles.head}>
        {title}
        {entries.length > 0 && (
          <button type="button" className="button button--secondary" onClick={onClear}>
            Clear history
          </button>
        )}
      </div>
      <p className={styles.note}>
        Kept in this browser, on this device only: your {HISTORY_LIMIT} newest avatars, never your photos.
      </p>
      {entries.length === 0 ? (
        <p className={styles.empty} data-testid="history-empty">
          Avatars you make will show up here.
        </p>
      ) : (
        // role="list": Safari drops list semantics from an unstyled list.
        <ul ref={list} role="list" className={styles.list} data-testid="history-list">
          {entries.map((entry, index) => (
            <HistoryItem
              key={entry.id}
              entry={entry}
              onDelete={() => {
                focusIndex.current = index;
                void remove(entry.id);
              }}
            />
          ))}
        </ul>
      )}
    </section>
  );
}

/** The blob's object URL while the item is shown; revoked when it goes. */
function useObjectUrl(blob: Blob): string | undefined {
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    const created = URL.createObjectURL(blob);
    setUrl(created);
    return () => URL.revokeObjectURL(created);
  }, [blob]);
  return url;
}

function HistoryItem({ entry, onDelete }: { entry: HistoryEntry; onDelete: () => void }) {
  const url = useObjectUrl(entry.png);
  const when = WHEN.format(entry.createdAt);
  return (
    <li className={styles.item} data-testid="history-item">
      <img
        className={styles.thumb}
        src={url}
        alt={`Avatar made ${when}`}
        width={entry.width || undefined}
        height={entry.height || undefined}
      />
      <p className={styles.meta}>
        <time dateTime={new Date(entry.createdAt).toISOString()}>{SHORT_WHEN.format(entry.createdAt)}</time>
      </p>
      <div className={styles.actions}>
        <a
          className="button button--secondary"
          href={url}
          download={historyFileName(entry.createdAt)}
          aria-label={`Download avatar made ${when}`}
        >
          Download
        </a>
        <button
          type="button"
          className={`button button--secondary ${styles.delete}`}
          onClick={onDelete}
          aria-label={`Delete avatar made ${when}`}
        >
          Delete
        </button>
      </div>
    </li>
  );
}
