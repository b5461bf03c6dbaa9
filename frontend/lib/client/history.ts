// "Your recent avatars": the avatars made in this browser, kept on this device only (IndexedDB). Each entry is the
// result PNG and a little metadata; never the user's photo (photos are private).

export const HISTORY_LIMIT = 12;
// tests/frontend/test_e2e.py seeds entries through these names and this shape.
const DB_NAME = "ethmumbai-avatar";
const DB_VERSION = 1;
const STORE = "avatars";

export interface NewHistoryEntry {
  createdAt: number; // ms since the epoch
  png: Blob;
  width: number;
  height: number;
  seed?: number;
  workflowVersion?: string;
}

export interface HistoryEntry extends NewHistoryEntry {
  id: number; // auto-increment key: a higher id is a newer avatar
}

function result<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new DOMException("Transaction aborted", "AbortError"));
  });
}

/**
 * The history database, or null where this browser cannot keep one: private modes either lack indexedDB,
 * throw on touching it, or fail the open request.
 */
export async function openHistory(): Promise<IDBDatabase | null> {
  try {
    const request = globalThis.indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    return await result(request);
  } catch {
    return null;
  }
}

/** The kept avatars, newest first. */
export async function listAvatars(db: IDBDatabase): Promise<HistoryEntry[]> {
  const all = await result(db.transaction(STORE).objectStore(STORE).getAll() as IDBRequest<HistoryEntry[]>);
  return all.reverse().slice(0, HISTORY_LIMIT);
}

/** Keep one more avatar and drop all but the newest HISTORY_LIMIT, in one transaction; → the saved entry. */
export async function addAvatar(db: IDBDatabase, entry: NewHistoryEntry): Promise<HistoryEntry> {
  const tx = db.transaction(STORE, "readwrite");
  const store = tx.objectStore(STORE);
  const added = store.add(entry) as IDBRequest<number>;
  // Requests run in order, so the keys include the new one. Deleting in the callback keeps the transaction alive.
  store.getAllKeys().onsuccess = (event) => {
    const keys = (event.target as IDBRequest<IDBValidKey[]>).result;
    keys.slice(0, -HISTORY_LIMIT).forEach((key) => store.delete(key));
  };
  await committed(tx);
  return { ...entry, id: added.result };
}

export async function deleteAvatar(db: IDBDatabase, id: number): Promise<void> {
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).delete(id);
  await committed(tx);
}

export async function clearAvatars(db: IDBDatabase): Promise<void> {
  const tx = db.transaction(STORE, "readwrite");
  tx.objectStore(STORE).clear();
  await committed(tx);
}

const pad = (n: number) => String(n).padStart(2, "0");

/** `ethmumbai-avatar-20250302-140533.png`, in local time: sorts by date, unique per second. */
export function historyFileName(createdAt: number): string {
  const d = new Date(createdAt);
  const date = `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
  return `ethmumbai-avatar-${date}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.png`;
}
