"""The review page: a small FastAPI app over one job's catalog rows. An edge like the CLI: it is given the
settings and the job, and calls tasks/ (the dataset view, corrections) and models/ (the suspects ranking).

Safe by default: `yotsuba review` binds 127.0.0.1; files are served by id (a face id, an image's sha256),
looked up in the catalog and checked to lie inside the data directory, never by a path from the request;
every request that changes data must carry this server's token, which only its pages hold (a cross-site
form cannot read it), and a foreign Origin is refused; bad ids get 404 and stale pages 409, each with a
message that says what to do.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from review import pages
from tasks import catalog
from tasks.corrections import CorrectionError, FaceState, face_states, history, in_effect, record, undo
from tasks.jobs import Job

SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BODY = 64 * 1024  # a correction is a few fields


class ReviewError(HTTPException):
    pass


def create_app(data_dir: Path, job: Job, who: str, token: str | None = None) -> FastAPI:
    """The review app for one job. `who` is recorded with each correction; the token is random per start."""
    data_dir = Path(data_dir).resolve()
    catalog_path = data_dir / "catalog.sqlite"
    labels = [label.name for label in job.labels]
    token = token or secrets.token_urlsafe(32)
    suspects_cache: dict[str, Any] = {"features": {}}
    suspects_lock = threading.Lock()
    app = FastAPI(title=f"yotsuba review: {job.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token

    @contextmanager
    def db() -> Iterator[sqlite3.Connection]:
        conn = catalog.connect(catalog_path)
        try:
            yield conn
        finally:
            conn.close()

    def check_job(name: str) -> None:
        if name != job.name:
            raise ReviewError(404, f"this review serves job {job.name}, not {name!r}")

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    @app.exception_handler(HTTPException)
    async def on_error(request: Request, exc: HTTPException) -> Response:
        if wants_json(request):
            return JSONResponse({"ok": False, "message": str(exc.detail)}, status_code=exc.status_code)
        return HTMLResponse(pages.error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    def render(view: str, title: str, body: str) -> HTMLResponse:
        return HTMLResponse(pages.page(job.name, token, view, title, body, labels),
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                                                "script-src 'unsafe-inline'; frame-ancestors 'none'"})

    def sources_of(conn: sqlite3.Connection, shas: set[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in conn.execute(
            """SELECT d.sha256, c.label, c.source_kind, c.subreddit, c.text, c.permalink FROM candidates c
               JOIN downloads d ON d.candidate_id = c.id WHERE c.job = ? AND d.sha256 IS NOT NULL ORDER BY c.id""",
                (job.name,)):
            if row["sha256"] in shas:
                found[row["sha256"]].append(dict(row))
        return found

    def cards(conn: sqlite3.Connection, states: list[FaceState], back: str, extra=None, actions=None) -> str:
        sources = sources_of(conn, {s.sha256 for s in states})
        html = "".join(pages.face_card(job.name, token, back, s, labels, sources.get(s.sha256, []),
                                       extra(s) if extra else "", actions(s) if actions else None) for s in states)
        return f'<div class="grid">{html}</div>' if html else '<p class="note">nothing here</p>'

    # ------------------------------------------------------------ views

    @app.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse(f"/jobs/{quote(job.name)}", status_code=303)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/jobs/{name}", response_class=HTMLResponse)
    def overview(name: str) -> HTMLResponse:
        check_job(name)
        with db() as conn:
            states = face_states(conn, job.name)
            corrections = len(in_effect(conn, job.name))
            suggested = len(latest_suggestions(conn))
        per_label: dict[str, Counter[str]] = {label: Counter() for label in labels}
        for s in states.values():
            for label in ([s.label] if s.label else s.found_for):
                counts = per_label.setdefault(label, Counter())
                counts["in training"] += s.in_training
                counts["unlabelled"] += s.role == "unlabelled" and s.status == "kept"
                counts[s.status] += s.status != "kept"
                counts["excluded by review"] += s.decision == "exclude"
        columns = ["label", "in training", "unlabelled", "duplicate", "grayscale", "cross_label", "excluded by review"]
        rows = [{"label": f'<a href="/jobs/{quote(job.name)}/labels/{quote(label)}">{escape(label)}</a>',
                 **{c: counts.get(c, 0) for c in columns[1:]}} for label, counts in per_label.items()]
        clusters = duplicate_clusters(states)
        body = (f'<p class="note">{sum(s.in_training for s in states.values())} faces in training, '
                f'{corrections} corrections in effect, {suggested} suggestions, '
                f'{len(clusters)} near-duplicate clusters. Start with the <a href="/jobs/{quote(job.name)}/suspects">'
                f'likely label errors</a>.</p>' + pages.counts_table(rows, columns))
        return render("", f"{job.name}: the dataset", body)

    @app.get("/jobs/{name}/labels/{label}", response_class=HTMLResponse)
    def label_view(name: str, label: str) -> HTMLResponse:
        check_job(name)
        if label not in labels:
            raise ReviewError(404, f"job {job.name} has no label {label!r} ({', '.join(labels)})")
        back = f"/jobs/{quote(job.name)}/labels/{quote(label)}"
        with db() as conn:
            states = [s for s in face_states(conn, job.name).values() if s.label == label and s.role == "labelled"]
            kept = [s for s in states if s.in_training]
            out = [s for s in states if not s.in_training and s.decision == "exclude"]
            body = (f'<p class="note">{len(kept)} faces in training; {len(out)} excluded by review.</p>'
                    + cards(conn, kept, back) + f"<h2>excluded by review ({len(out)})</h2>" + cards(conn, out, back))
        return render(f"label:{label}", f"{label}: {len(kept)} faces", body)

    def latest_suggestions(conn: sqlite3.Connection) -> dict[int, sqlite3.Row]:
        rows = conn.execute("SELECT * FROM suggestions WHERE job = ? ORDER BY suggested_at", (job.name,))
        return {row["face_id"]: row for row in rows}

    @app.get("/jobs/{name}/unlabelled", response_class=HTMLResponse)
    def unlabelled_view(name: str) -> HTMLResponse:
        check_job(name)
        back = f"/jobs/{quote(job.name)}/unlabelled"
        with db() as conn:
            states = face_states(conn, job.name)
            suggestions = latest_suggestions(conn)
            pool = [s for s in states.values() if s.role == "unlabelled" and s.status == "kept"
                    and not s.suggestion_rejected]
            pool.sort(key=lambda s: -(suggestions[s.face_id]["confidence"] if s.face_id in suggestions else -1))

            def extra(s: FaceState) -> str:
                row = suggestions.get(s.face_id)
                if row is None:
                    return '<div class="note">no suggestion</div>'
                return (f'<div>suggested: <span class="pred">{escape(row["label"])}</span> '
                        f'{row["confidence"]:.0%}</div>')

            def actions(s: FaceState) -> str:
                row = suggestions.get(s.face_id)
                accept = (pages.action_form(job.name, token, back, s, "accept_suggestion", f"accept {row['label']}",
                                            "a", row["label"]) + " "
                          + pages.action_form(job.name, token, back, s, "reject_suggestion", "reject", "x")) if row \
                    else ""
                return accept + " " + pages.relabel_form(job.name, token, back, s, labels)

            note = ("" if suggestions else f'<p class="note">No suggestions yet: <code>yotsuba suggest JOB_FILE</code> '
                                           f'asks the champion model of {escape(job.name)} for them.</p>')
            body = (f'<p class="note">{len(pool)} unlabelled faces (from pictures with several faces), '
                    f'{sum(1 for s in pool if s.face_id in suggestions)} with a suggestion of the champion model, '
                    f'most confident first.</p>{note}' + cards(conn, pool, back, extra, actions))
        return render("unlabelled", f"unlabelled faces: {len(pool)}", body)

    def duplicate_clusters(states: dict[int, FaceState]) -> list[list[FaceState]]:
        clusters: dict[int, list[FaceState]] = defaultdict(list)
        for s in states.values():
            if s.cluster is not None:
                clusters[s.cluster].append(s)
        return sorted((m for m in clusters.values() if len(m) > 1), key=lambda m: (-len(m), m[0].face_id))

    @app.get("/jobs/{name}/duplicates", response_class=HTMLResponse)
    def duplicates_view(name: str) -> HTMLResponse:
        check_job(name)
        back = f"/jobs/{quote(job.name)}/duplicates"
        with db() as conn:
            clusters = duplicate_clusters(face_states(conn, job.name))

            def actions(s: FaceState) -> str:
                if s.status == "kept":
                    return '<span class="tag">keeper</span>'
                return pages.action_form(job.name, token, back, s, "keeper", "make keeper", "a")

            sections = "".join(
                f'<div class="cluster"><h2>cluster {members[0].cluster}: {len(members)} faces</h2>'
                + cards(conn, sorted(members, key=lambda s: s.status != "kept"), back, actions=actions) + "</div>"
                for members in clusters)
        duplicates = sum(len(m) - 1 for m in clusters)
        body = (f'<p class="note">{len(clusters)} clusters of near-duplicate faces, {duplicates} duplicates left out '
                f'of the dataset. The keeper is the face that stays.</p>' + (sections or '<p class="note">none</p>'))
        return render("duplicates", f"near-duplicates: {len(clusters)} clusters", body)

    @app.get("/jobs/{name}/conflicts", response_class=HTMLResponse)
    def conflicts_view(name: str) -> HTMLResponse:
        check_job(name)
        back = f"/jobs/{quote(job.name)}/conflicts"
        with db() as conn:
            faces = sorted((s for s in face_states(conn, job.name).values() if s.status == "cross_label"),
                           key=lambda s: (s.cluster or 0, s.face_id))  # a cluster's faces side by side
            body = (f'<p class="note">{len(faces)} faces in near-duplicate clusters found for two labels: trusted '
                    f'under neither until you give one its label.</p>' + cards(conn, faces, back))
        return render("conflicts", f"cross-label conflicts: {len(faces)}", body)

    @app.get("/jobs/{name}/grayscale", response_class=HTMLResponse)
    def grayscale_view(name: str) -> HTMLResponse:
        check_job(name)
        back = f"/jobs/{quote(job.name)}/grayscale"
        with db() as conn:
            faces = [s for s in face_states(conn, job.name).values() if s.status == "grayscale"]
            body = (f'<p class="note">{len(faces)} faces from grayscale or manga pictures, left out of training; '
                    f'include one to train on it.</p>' + cards(conn, faces, back))
        return render("grayscale", f"grayscale: {len(faces)}", body)

    def ranked_suspects(states: dict[int, FaceState]):
        from models.suspects import find_suspects

        # by path (content-named): the same faces make the same folds, whatever order they were downloaded in
        faces = sorted(((s.face_id, s.path, s.label) for s in states.values() if s.in_training), key=lambda f: f[1])
        key = repr(faces)
        with suspects_lock:  # one computation per dataset state, shared by the page's requests
            if suspects_cache.get("key") != key:
                report = find_suspects(data_dir, faces, feature_cache=suspects_cache["features"])  # type: ignore[arg-type]
                suspects_cache.update(key=key, report=report)
            return suspects_cache["report"]

    @app.get("/jobs/{name}/suspects", response_class=HTMLResponse)
    def suspects_view(name: str, limit: int = 60) -> HTMLResponse:
        check_job(name)
        back = f"/jobs/{quote(job.name)}/suspects"
        with db() as conn:
            states = face_states(conn, job.name)
            report = ranked_suspects(states)
            shown = [(rank, s) for rank, s in enumerate(report.ranked, start=1) if s.face_id in states][:max(1, limit)]
            by_id = {s.face_id: (rank, s) for rank, s in shown}

            def extra(state: FaceState) -> str:
                rank, s = by_id[state.face_id]
                flag = ' <span class="tag">cleanlab: issue</span>' if s.issue else ""
                return (f'<div data-rank="{rank}">rank {rank}: given {escape(s.given)} {s.given_probability:.0%}, '
                        f'predicted <span class="pred">{escape(s.predicted)}</span> '
                        f'{s.predicted_probability:.0%}{flag}</div>')

            def actions(state: FaceState) -> str:
                _, s = by_id[state.face_id]
                to = (pages.action_form(job.name, token, back, state, "relabel", f"relabel {s.predicted}", "r",
                                        s.predicted) + " ") if s.predicted != state.label else ""
                return (to + pages.action_form(job.name, token, back, state, "exclude", "exclude", "x") + " "
                        + pages.relabel_form(job.name, token, back, state, labels))

            skipped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(report.skipped.items()))
            body = (f'<p class="note">{len(report.ranked)} labelled faces ranked by the out-of-sample probability of '
                    f'their given label ({report.folds}-fold cross-validated logistic regression on colour and '
                    f'layout features; cleanlab). {sum(s.issue for s in report.ranked)} flagged as label issues. '
                    f'Showing the first {len(shown)}.' + (f" Not ranked: {skipped}." if skipped else "") + "</p>"
                    + cards(conn, [states[s.face_id] for _, s in shown], back, extra, actions))
        return render("suspects", "likely label errors", body)

    @app.get("/jobs/{name}/corrections", response_class=HTMLResponse)
    def corrections_view(name: str) -> HTMLResponse:
        check_job(name)
        with db() as conn:
            rows = history(conn, job.name)
        lines = []
        for row in rows:
            what = escape(row["action"] + (f" {row['value']}" if row["value"] else "")
                          + (f" of correction {row['undoes']}" if row["undoes"] else ""))
            button = "" if row["undone"] or row["action"] == "undo" else (
                f'<form class="act" method="post" action="/jobs/{quote(job.name)}/corrections/{row["id"]}/undo">'
                f'{pages._hidden("token", token)}<button type="submit">undo</button></form>')
            state = "undone" if row["undone"] else ""
            lines.append(f'<tr><td>{row["id"]}</td><td><a href="/faces/{row["face_id"]}.png">face {row["face_id"]}'
                         f'</a></td><td>{what}</td><td>{escape(row["who"])}</td>'
                         f'<td>{_when(row["at"])}</td><td>{state}{button}</td></tr>')
        table = ("<table><tr><th>id</th><th>face</th><th>what</th><th>who</th><th>when (UTC)</th><th></th></tr>"
                 + "".join(lines) + "</table>") if lines else '<p class="note">no corrections yet</p>'
        return render("corrections", f"corrections: {len(rows)}", '<p class="note">Append-only: an undo is one more '
                      'row. Every rerun of prepare keeps them; training applies the ones in effect.</p>' + table)

    # ------------------------------------------------------------ files, by id only

    def inside_data_dir(relative: str) -> Path:
        path = (data_dir / relative).resolve()
        if not path.is_relative_to(data_dir) or not path.is_file():
            raise ReviewError(404, "the file of this id is missing from the data directory")
        return path

    @app.get("/faces/{face_id}.png")
    def face_file(face_id: str) -> FileResponse:
        if not face_id.isdigit() or len(face_id) > 18:
            raise ReviewError(404, f"{face_id!r} is not a face id (a number)")
        with db() as conn:
            row = conn.execute("SELECT path FROM faces WHERE id = ?", (int(face_id),)).fetchone()
        if row is None:
            raise ReviewError(404, f"no face {face_id}")
        return FileResponse(inside_data_dir(row["path"]), media_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/images/{sha256}")
    def image_file(sha256: str) -> FileResponse:
        if not SHA256.fullmatch(sha256):
            raise ReviewError(404, f"{sha256!r} is not an image id (a sha256 in hex)")
        with db() as conn:
            row = conn.execute("SELECT ext, format FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            raise ReviewError(404, f"no stored image {sha256}")
        path = inside_data_dir(f"images/{sha256[:2]}/{sha256}.{row['ext']}")
        return FileResponse(path, media_type=f"image/{row['format'].lower()}")

    # ------------------------------------------------------------ changes: token, then the correction

    async def form_of(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise ReviewError(403, f"a request from {origin} may not change this dataset")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ReviewError(413, "request too large")
        try:
            fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            raise ReviewError(400, "the form is not UTF-8") from None
        sent = fields.get("token") or request.headers.get("x-review-token")
        if not sent:
            raise ReviewError(403, "this request carries no review token: changes are accepted only from the "
                                   "review page's own forms (reload the page)")
        if not secrets.compare_digest(sent.encode(), token.encode()):
            raise ReviewError(403, "this page's token is not this review server's: the page is from an earlier "
                                   "`yotsuba review` (reload it)")
        return fields

    def done(request: Request, fields: dict[str, str], payload: dict[str, Any]) -> Response:
        if wants_json(request):
            return JSONResponse({"ok": True, **payload})
        back = fields.get("back", "")
        target = back if back.startswith(f"/jobs/{quote(job.name)}") and "//" not in back else f"/jobs/{job.name}"
        return RedirectResponse(target, status_code=303)

    def state_of(face_id: int) -> FaceState | None:
        with db() as conn:
            return face_states(conn, job.name).get(face_id)

    @app.post("/jobs/{name}/corrections")
    async def correct(name: str, request: Request) -> Response:
        check_job(name)
        fields = await form_of(request)
        face = fields.get("face_id", "")
        if not face.isdigit() or len(face) > 18:
            raise ReviewError(404, f"{face!r} is not a face id (a number)")
        action = fields.get("action", "")
        try:
            with db() as conn:
                cid = record(conn, job.name, int(face), action, who, labels, value=fields.get("value") or None,
                             expect=fields.get("expect") or None)
        except CorrectionError as exc:
            raise ReviewError(exc.status, str(exc)) from None
        state = state_of(int(face))
        message = f"{action.replace('_', ' ')}" + (f" {fields.get('value')}" if fields.get("value") else "")
        message += f": now {'in' if state and state.in_training else 'out of'} training (correction {cid})"
        return done(request, fields, {"id": cid, "message": message, "version": state.version() if state else None,
                                      "undo_url": f"/jobs/{quote(job.name)}/corrections/{cid}/undo"})

    @app.post("/jobs/{name}/corrections/{cid}/undo")
    async def take_back(name: str, cid: str, request: Request) -> Response:
        check_job(name)
        fields = await form_of(request)
        if not cid.isdigit() or len(cid) > 18:
            raise ReviewError(404, f"{cid!r} is not a correction id (a number)")
        try:
            with db() as conn:
                uid = undo(conn, job.name, int(cid), who)
                face_id = conn.execute("SELECT face_id FROM corrections WHERE id = ?", (uid,)).fetchone()[0]
        except CorrectionError as exc:
            raise ReviewError(exc.status, str(exc)) from None
        state = state_of(face_id)
        return done(request, {**fields, "back": fields.get("back") or f"/jobs/{quote(job.name)}/corrections"},
                    {"id": uid, "message": f"correction {cid} undone (correction {uid})",
                     "version": state.version() if state else None})

    return app


def _when(at: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
