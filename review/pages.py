"""Server-rendered HTML for the review page: small functions, every value escaped, one stylesheet and one
script inline (no build step, no files to serve)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from tasks.corrections import FaceState

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24292f;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header a{color:#fff;text-decoration:none} header a.on{text-decoration:underline} header b{font-size:16px}
main{padding:12px 16px} h1{font-size:18px;margin:4px 0 8px} h2{font-size:15px;margin:16px 0 6px}
.note{color:#555;margin:4px 0 10px} .err{background:#fee;border:1px solid #c00;padding:8px;margin:8px 0}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;border:1px solid #ccc;border-radius:4px;padding:6px;width:220px;outline:none}
.card:focus{border-color:#0969da;box-shadow:0 0 0 2px #0969da55}
.card.done{opacity:.55} .card.bad{border-color:#c00}
.card img{width:96px;height:96px;image-rendering:pixelated;display:block;float:left;margin:0 6px 4px 0}
.card .src{font-size:11px;color:#555;word-break:break-word;clear:both;max-height:4.2em;overflow:hidden}
.card form{display:inline} .card button,.card select{font-size:12px;margin:2px 0}
.lbl{font-weight:600} .pred{color:#b35900;font-weight:600} .tag{font-size:11px;background:#eee;padding:0 4px}
.msg{font-size:12px;color:#0a5;clear:both} .msg.bad{color:#c00}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left} .cluster{border-top:1px solid #ccc;padding:6px 0}
kbd{background:#eee;border:1px solid #bbb;border-radius:3px;padding:0 3px;font-size:11px}
"""

# Progressive: every action is a plain form that works without it. With it, forms post with fetch, the card
# shows the result and an undo button in place, and keys act on the focused card.
SCRIPT = """
(function(){
const token=document.body.dataset.token;
function cards(){return Array.from(document.querySelectorAll('.card'));}
function show(card,text,bad){let m=card.querySelector('.msg');if(!m){m=document.createElement('div');m.className='msg';
 card.appendChild(m);} m.className='msg'+(bad?' bad':''); m.textContent=text; return m;}
async function send(form){
 const card=form.closest('.card'); const body=new URLSearchParams(new FormData(form));
 const r=await fetch(form.getAttribute('action'),{method:'POST',body:body,headers:{'Accept':'application/json'}});
 const data=await r.json().catch(()=>({message:'the server answered '+r.status}));
 if(!r.ok){if(card){show(card,data.message,true);card.classList.add('bad');} else alert(data.message); return;}
 if(!card){location.reload();return;}
 card.classList.remove('bad'); card.classList.add('done');
 card.querySelectorAll('input[name=expect]').forEach(i=>i.value=data.version||i.value);
 const m=show(card,data.message,false);
 if(data.undo_url){const b=document.createElement('button');b.textContent='undo';b.className='undo';
  b.onclick=async()=>{const u=await fetch(data.undo_url,{method:'POST',body:new URLSearchParams({token:token}),
   headers:{'Accept':'application/json'}});const d=await u.json().catch(()=>({message:'error '+u.status}));
   show(card,d.message,!u.ok); if(u.ok){card.classList.remove('done');
   card.querySelectorAll('input[name=expect]').forEach(i=>i.value=d.version||i.value);}};
  m.appendChild(document.createTextNode(' ')); m.appendChild(b); document.lastUndo=b;}
}
document.addEventListener('submit',e=>{if(e.target.matches('form.act')){e.preventDefault();send(e.target);}});
document.addEventListener('keydown',e=>{
 if(e.target.matches('input,select,textarea')||e.ctrlKey||e.metaKey||e.altKey)return;
 const all=cards(); const card=document.activeElement.closest?document.activeElement.closest('.card'):null;
 const at=all.indexOf(card);
 const click=sel=>{const b=card&&card.querySelector(sel);if(b){b.click();e.preventDefault();}};
 if(e.key==='j'||e.key==='ArrowRight'){const n=all[Math.min(all.length-1,at+1)];if(n)n.focus();e.preventDefault();}
 else if(e.key==='k'||e.key==='ArrowLeft'){const n=all[Math.max(0,at-1)];if(n)n.focus();e.preventDefault();}
 else if(e.key==='x')click('button[data-key=x]');
 else if(e.key==='i')click('button[data-key=i]');
 else if(e.key==='a')click('button[data-key=a]');
 else if(e.key==='r')click('button[data-key=r]');
 else if(e.key==='u'){const b=(card&&card.querySelector('button.undo'))||document.lastUndo;
  if(b){b.click();e.preventDefault();}}
 else if(/^[1-9]$/.test(e.key)&&card){const s=card.querySelector('select[name=value]');const o=s&&s.options[+e.key-1];
  if(o){s.value=o.value;s.form.requestSubmit();e.preventDefault();}}
});
const first=cards()[0]; if(first&&!location.hash)first.focus({preventScroll:true});
})();
"""

VIEWS = (("", "overview"), ("suspects", "suspects"), ("unlabelled", "unlabelled"), ("duplicates", "duplicates"),
         ("conflicts", "cross-label"), ("grayscale", "grayscale"), ("corrections", "corrections"))


def page(job: str, token: str, view: str, title: str, body: str, labels: list[str]) -> str:
    links = " ".join(f'<a class="{"on" if key == view else ""}" href="{_job_url(job, key)}">{escape(name)}</a>'
                     for key, name in VIEWS)
    label_links = " ".join(f'<a class="{"on" if view == "label:" + label else ""}" '
                           f'href="{_job_url(job, "labels/" + quote(label))}">{escape(label)}</a>' for label in labels)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}: yotsuba review'
            f'</title><meta name="referrer" content="same-origin"><style>{CSS}</style></head>'
            f'<body data-token="{escape(token)}"><header><b>yotsuba review: {escape(job)}</b>{links}'
            f'<span>labels: {label_links}</span></header><main><h1>{escape(title)}</h1>{body}'
            f'<p class="note">Keys: <kbd>j</kbd>/<kbd>k</kbd> next/previous face, <kbd>x</kbd> exclude, '
            f'<kbd>i</kbd> include, <kbd>a</kbd> accept the suggestion, <kbd>r</kbd> relabel to the predicted '
            f'label, <kbd>1</kbd>-<kbd>9</kbd> relabel to the n-th label, <kbd>u</kbd> undo.</p></main>'
            f'<script>{SCRIPT}</script></body></html>')


def error_page(status: int, message: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{status}</title><style>{CSS}</style>'
            f'</head><body><main><h1>{status}</h1><div class="err">{escape(message)}</div>'
            f'<p><a href="/">the review page</a></p></main></body></html>')


def _job_url(job: str, view: str) -> str:
    return f"/jobs/{quote(job)}" + (f"/{view}" if view else "")


def _hidden(name: str, value: Any) -> str:
    return f'<input type="hidden" name="{name}" value="{escape(str(value))}">'


def action_form(job: str, token: str, back: str, state: FaceState, action: str, text: str, key: str = "",
                value: str | None = None) -> str:
    data_key = f' data-key="{key}"' if key else ""
    return (f'<form class="act" method="post" action="{_job_url(job, "corrections")}">'
            f'{_hidden("token", token)}{_hidden("face_id", state.face_id)}{_hidden("action", action)}'
            f'{_hidden("expect", state.version())}{_hidden("back", back)}'
            f'{_hidden("value", value) if value is not None else ""}'
            f'<button type="submit" name="do" value="{action}"{data_key}>{escape(text)}</button></form>')


def relabel_form(job: str, token: str, back: str, state: FaceState, labels: list[str]) -> str:
    options = "".join(f'<option value="{escape(label)}"{" selected" if label == state.label else ""}>'
                      f'{i}. {escape(label)}</option>' for i, label in enumerate(labels, start=1))
    return (f'<form class="act" method="post" action="{_job_url(job, "corrections")}">'
            f'{_hidden("token", token)}{_hidden("face_id", state.face_id)}{_hidden("action", "relabel")}'
            f'{_hidden("expect", state.version())}{_hidden("back", back)}'
            f'<select name="value" aria-label="label">{options}</select>'
            f'<button type="submit" name="do" value="relabel">relabel</button></form>')


def source_line(sources: list[dict[str, Any]]) -> str:
    if not sources:
        return '<div class="src">no source recorded</div>'
    s = sources[0]
    link = s.get("permalink") or ""
    where = f'r/{escape(s["subreddit"])}'
    if link.startswith(("https://", "http://")):
        where = f'<a href="{escape(link)}" rel="noreferrer noopener" target="_blank">{where}</a>'
    more = f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""
    return (f'<div class="src">{where} · {escape(s["source_kind"])} · {escape(s.get("text") or "")}{more}</div>')


def face_card(job: str, token: str, back: str, state: FaceState, labels: list[str], sources: list[dict[str, Any]],
              extra: str = "", actions: str | None = None) -> str:
    given = (escape(state.label) if state.label and state.role == "labelled"
             else "posted for " + escape(", ".join(state.found_for)))
    tags = []
    if state.status != "kept" or state.role != "labelled":
        tags.append(f"{state.role}, {state.status}")
    if state.decision:
        tags.append(f"{state.decision}d by review")
    if state.reviewed:
        tags.append("labelled by review")
    tag_html = "".join(f' <span class="tag">{escape(t)}</span>' for t in tags)
    if actions is None:
        toggle = (action_form(job, token, back, state, "include", "include", "i") if not state.in_training
                  else action_form(job, token, back, state, "exclude", "exclude", "x"))
        actions = relabel_form(job, token, back, state, labels) + " " + toggle
    return (f'<div class="card" tabindex="0" id="face-{state.face_id}" data-face="{state.face_id}">'
            f'<a href="/images/{escape(state.sha256)}" target="_blank"><img alt="face {state.face_id}" loading="lazy" '
            f'src="/faces/{state.face_id}.png"></a><div>#{state.face_id} <span class="lbl">{given}</span>{tag_html}'
            f'</div>{extra}<div>{actions}</div>{source_line(sources)}</div>')


def counts_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{row[c]}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
