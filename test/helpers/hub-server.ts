/**
 * A local stand-in for the Hugging Face Hub on 127.0.0.1, serving model directories under the URL
 * scheme the official client (@huggingface/hub) uses — read from its source:
 *
 *   GET  /api/models/{repo}/revision/{rev}          model info (the commit id in `sha`)
 *   GET  /api/models/{repo}/tree/{commit}?recursive  the file listing
 *   POST /api/models/{repo}/paths-info/{commit}      per-file oid, size, last commit
 *   GET  /{repo}/resolve/{commit}/{path}             the bytes (Range: bytes=0-0 → 206 + Content-Range + ETag)
 *
 * Knobs for failure tests: gated repositories (401 without the token), a file whose first download
 * is cut off half-way (the socket destroyed), one whose first download ends cleanly after half its
 * bytes (chunked, no Content-Length: what a truncating proxy delivers), and a request log.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface HubRepo {
  /** Files: path → bytes. */
  readonly files: Map<string, Buffer>;
  /** Requests without `Authorization: Bearer <token>` get 401. */
  readonly token?: string;
}

export interface HubServer {
  readonly url: string;
  readonly requests: string[];
  /** Cut the next download of this path (repo/path) off after half its bytes. */
  cutOnce(repoPath: string): void;
  /** End the next download of this path cleanly after half its bytes, without a Content-Length. */
  shortOnce(repoPath: string): void;
  close(): Promise<void>;
}

export const COMMIT = 'a'.repeat(8) + '0123456789abcdef0123456789abcdef';

/** A repository from a model directory's files (plus extra files, e.g. weights in other formats). */
export function repoFromDir(dir: string, extra: Record<string, Buffer> = {}, token?: string): HubRepo {
  const files = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir)) if (fs.statSync(path.join(dir, f)).isFile()) files.set(f, fs.readFileSync(path.join(dir, f)));
  for (const [k, v] of Object.entries(extra)) files.set(k, v);
  return { files, ...(token ? { token } : {}) };
}

const oid = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

export async function startHubServer(repos: Record<string, HubRepo>): Promise<HubServer> {
  const requests: string[] = [];
  const cuts = new Set<string>();
  const shorts = new Set<string>();
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const p = decodeURIComponent(url.pathname);
      const api = /^\/api\/models\/(.+?)\/(revision|tree|paths-info)\/([^/]+)(?:\/(.*))?$/.exec(p);
      const resolve = api ? null : /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(p);
      const repoName = api?.[1] ?? resolve?.[1];
      const repo = repoName ? repos[repoName] : undefined;
      if (!repo) return json(res, 404, { error: 'Repository not found' });
      if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return json(res, 401, { error: `Access to model ${repoName} is restricted. You must have access to it and be authenticated to access it.` });
      if (api) {
        const [, , kind, rev] = api;
        if (kind === 'revision') {
          if (rev !== 'main' && rev !== COMMIT) return json(res, 404, { error: `Invalid rev id: ${rev}` });
          return json(res, 200, { _id: 'x', id: repoName, sha: COMMIT, private: !!repo.token, gated: false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z', pipeline_tag: 'text-generation' });
        }
        if (kind === 'tree') return json(res, 200, [...repo.files].map(([f, b]) => ({ type: 'file', path: f, size: b.length, oid: oid(b) })));
        const wanted = (JSON.parse(body || '{}') as { paths?: string[] }).paths ?? [];
        return json(res, 200, wanted.filter((f) => repo.files.has(f)).map((f) => {
          const b = repo.files.get(f)!;
          return { type: 'file', path: f, size: b.length, oid: oid(b), lastCommit: { id: COMMIT, title: 'init', date: '2026-01-01T00:00:00.000Z' } };
        }));
      }
      const [, , , file] = resolve!;
      const b = repo.files.get(file!);
      if (!b) {
        res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'Content-Type': 'text/plain' });
        return res.end('Entry not found');
      }
      const headers = { ETag: `"${oid(b)}"`, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes' };
      const range = req.headers.range;
      if (range === 'bytes=0-0') {
        res.writeHead(206, { ...headers, 'Content-Range': `bytes 0-0/${b.length}`, 'Content-Length': '1' });
        return res.end(b.subarray(0, 1));
      }
      const key = `${repoName}/${file}`;
      if (shorts.delete(key)) {
        res.writeHead(200, headers);
        return res.end(b.subarray(0, b.length >> 1));
      }
      res.writeHead(200, { ...headers, 'Content-Length': String(b.length) });
      if (cuts.delete(key)) {
        res.write(b.subarray(0, b.length >> 1), () => res.destroy());
        return;
      }
      res.end(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    cutOnce: (k) => void cuts.add(k),
    shortOnce: (k) => void shorts.add(k),
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
