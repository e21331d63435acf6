import { $, adoptTokenFromUrl, setToken } from "./api.js";
import * as record from "./record.js";
import * as data from "./data.js";
import * as train from "./train.js";
import * as voices from "./voices.js";

const PAGES = { record, data, train, voices };
const shown = new Set();

function show() {
  const name = (location.hash || "#record").slice(1);
  const page = PAGES[name] ? name : "record";
  for (const p of Object.keys(PAGES)) {
    $(`page-${p}`).hidden = p !== page;
    $(`tab-${p}`).setAttribute("aria-selected", String(p === page));
  }
  if (!shown.has(page)) { shown.add(page); PAGES[page].init(); } else if (PAGES[page].refresh) PAGES[page].refresh();
  document.body.dataset.page = page;
}

adoptTokenFromUrl();
$("auth-save").addEventListener("click", () => { setToken($("auth-token").value.trim()); location.reload(); });
window.addEventListener("hashchange", show);
show();
