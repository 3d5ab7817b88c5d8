(function () {
  'use strict';
  /* the confusion table: a small sorter over its few rows */
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        var numeric = th.getAttribute('data-type') === 'num';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(cell) {
          var v = cell.getAttribute('data-v');
          if (v === null) v = cell.textContent;
          return numeric ? (v === '' ? NaN : parseFloat(v)) : v.toLowerCase();
        }
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (numeric) {
            if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
            return ascending ? x - y : y - x;
          }
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
    });
  });

  var D = JSON.parse(document.getElementById('report-data').textContent);
  var IM = D.images, METHODS = D.methods, ROW = 28;
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtScore(v) {
    if (v === null || v === undefined) return '';
    if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
    return v.toFixed(4);
  }
  // The regions column counts the regions at or above the threshold score --regions
  // recorded (the ranking's own count); without one, every listed region.
  function regionCount(im) {
    if (D.region_threshold !== null && D.region_threshold !== undefined) return im.nreg;
    return im.reg ? im.reg.length + (im.more || 0) : im.nreg;
  }
  var showAllRegions = false;
  function fmtRegionScore(v) { return Math.min(Math.floor(v * 100) / 100, 0.99).toFixed(2); }
  function fmtInt(v) { return v === null || v === undefined ? '' : v.toLocaleString('en-US'); }
  function lowShare(im) { return im.low === null || im.low === undefined || !im.px ? null : 100 * im.low / im.px; }

  /* --- decisions: {image id: {'': whole image, '3': region 3}: {d, note, sha}} in localStorage --- */
  var store = {};
  try { store = JSON.parse(localStorage.getItem(D.storage_key) || '{}') || {}; } catch (e) { store = {}; }
  var message = '';
  function save() {
    try { localStorage.setItem(D.storage_key, JSON.stringify(store)); }
    catch (e) { message = 'could not save in this browser (' + e.name + '): download decisions.csv to keep them'; }
  }
  /* report --decisions: an earlier decisions.csv starts the review; what this browser decided since wins */
  var seeded = 0;
  Object.keys(D.seed || {}).forEach(function (id) {
    var given = D.seed[id], s = store[id] || {};
    Object.keys(given).forEach(function (k) { if (!(k in s)) { s[k] = given[k]; seeded++; } });
    if (Object.keys(s).length) store[id] = s;
  });
  if (seeded) save();
  function keyOf(region) { return region === null || region === undefined ? '' : String(region); }
  function decisionOf(id, region) { var s = store[id]; return s ? s[keyOf(region)] : undefined; }
  function decide(im, region, d) {
    if (d === 'ok' && region === null && !im.sha) {
      message = 'no mask hash for ' + im.id + ': a whole-image ok needs it (make the report from a ranking ' +
                'whose run record names the masks)';
      return false;
    }
    var s = store[im.id] || (store[im.id] = {});
    var k = keyOf(region), old = s[k];
    if (d === null) { delete s[k]; if (!Object.keys(s).length) delete store[im.id]; }
    else s[k] = {d: d, note: old ? old.note : ($('note') ? $('note').value : ''), sha: im.sha};
    message = '';
    save();
    return true;
  }
  function setNote(im, region, note) {
    var r = decisionOf(im.id, region);
    if (r) { r.note = note; save(); }
  }
  function csvField(v) {
    v = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function decisionsCsv() {
    var lines = [D.columns.join(',')], done = {};
    function add(id) {
      var s = store[id];
      if (!s || done[id]) return;
      done[id] = true;
      Object.keys(s).sort(function (a, b) { return a === '' ? -1 : b === '' ? 1 : a - b; }).forEach(function (k) {
        var r = s[k];
        lines.push([id, k, r.d, r.note || '', r.sha || ''].map(csvField).join(','));
      });
    }
    IM.forEach(function (im) { add(im.id); });
    Object.keys(store).sort().forEach(add);  /* decided in another report of the same masks */
    return lines.join('\n') + '\n';
  }
  function download() {
    var blob = new Blob([decisionsCsv()], {type: 'text/csv'});
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'decisions.csv';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  /* --- filters, sorting, the view (indices into IM) --- */
  var S = {q: '', cls: '', side: 'either', kind: '', m: 0, lo: NaN, hi: NaN, bin: null, dec: 'all', sort: 'rank', asc: true};
  var view = [], cur = -1, target = null;
  function score(im) { var v = im.s[S.m]; return v === null || v === undefined ? NaN : v; }
  function hasClass(im, c, side) {
    var a = side !== 'likely', l = side !== 'annotated';
    if ((a && im.sus === c) || (l && im.lik === c)) return true;
    return !!im.reg && im.reg.some(function (r) { return (a && r[2] === c) || (l && r[3] === c); });
  }
  function matches(im) {
    if (S.q && im.id.toLowerCase().indexOf(S.q) < 0) return false;
    if (S.cls && !hasClass(im, S.cls, S.side)) return false;
    if (S.kind && im.worst !== S.kind && !(im.reg && im.reg.some(function (r) { return r[1] === S.kind; }))) return false;
    var v = score(im);
    if (S.bin) {
      if (isNaN(v) || Math.min(S.bin.bins - 1, Math.floor((v - S.bin.low) / S.bin.span * S.bin.bins)) !== S.bin.n) return false;
    } else {
      if (!isNaN(S.lo) && !(v >= S.lo)) return false;
      if (!isNaN(S.hi) && !(v <= S.hi)) return false;
    }
    if (S.dec !== 'all') {
      var d = decisionOf(im.id, null), any = !!store[im.id];
      if (S.dec === 'undecided' && any) return false;
      if (S.dec === 'decided' && !any) return false;
      if (S.dec !== 'undecided' && S.dec !== 'decided' && !(d && d.d === S.dec)) return false;
    }
    return true;
  }
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  var COLUMNS = [{key: 'rank', label: 'rank', num: true, get: function (im) { return im.rank; }, show: function (im) { return im.rank; }},
                 {key: 'id', label: 'image', get: function (im) { return im.id; }, show: function (im) { return im.id; }}];
  METHODS.forEach(function (m, i) {
    COLUMNS.push({key: 'm' + i, label: m, num: true, method: i,
                  get: function (im) { var v = im.s[i]; return v === null ? NaN : v; },
                  show: function (im) { return fmtScore(im.s[i]); }});
  });
  COLUMNS.push({key: 'px', label: 'pixels', num: true, get: function (im) { return im.px === null ? NaN : im.px; }, show: function (im) { return fmtInt(im.px); }},
               {key: 'lowp', label: 'low %', num: true, get: function (im) { var v = lowShare(im); return v === null ? NaN : v; },
                show: function (im) { var v = lowShare(im); return v === null ? '' : v.toFixed(1); }},
               {key: 'sus', label: 'annotated', get: function (im) { return im.sus; }, show: function (im) { return im.sus; }},
               {key: 'lik', label: 'likely', get: function (im) { return im.lik; }, show: function (im) { return im.lik; }},
               {key: 'nreg', label: 'regions', num: true,
                get: function (im) { var n = regionCount(im); return n === null || n === undefined ? NaN : n; },
                show: function (im) { var n = regionCount(im); return n === null || n === undefined ? '' : n; }},
               {key: 'dec', label: 'decision', get: function (im) { var d = decisionOf(im.id, null); return d ? d.d : (store[im.id] ? '~' : '~~'); }});
  var TEMPLATE = '64px minmax(160px, 2.2fr)' + ' 84px'.repeat(METHODS.length) + ' 76px 60px minmax(80px, 1fr) minmax(80px, 1fr) 72px 84px';
  function column(key) { return COLUMNS.filter(function (c) { return c.key === key; })[0]; }
  function refilter(keep) {
    var id = keep && cur >= 0 ? IM[view[cur]].id : null;
    view = [];
    for (var i = 0; i < IM.length; i++) if (matches(IM[i])) view.push(i);
    var c = column(S.sort), sign = S.asc ? 1 : -1;
    if (c && c.key !== 'rank') {
      view.sort(function (a, b) {
        var x = c.get(IM[a]), y = c.get(IM[b]), r;
        if (c.num) {
          if (isNaN(x) || isNaN(y)) r = isNaN(x) - isNaN(y);  /* empty cells last */
          else r = sign * (x - y);
        } else r = sign * collator.compare(x, y);
        return r || IM[a].rank - IM[b].rank;
      });
    } else if (!S.asc) view.reverse();
    cur = -1;
    if (id !== null) for (var p = 0; p < view.length; p++) if (IM[view[p]].id === id) { cur = p; break; }
    $('body').style.height = view.length * ROW + 'px';
    if (cur < 0) { target = null; if (view.length) cur = 0; }
    renderHead();
    renderRows();
    renderDetail();
  }

  /* --- the virtualised table: only the rows in view (and a few around) are in the document --- */
  function renderHead() {
    var head = $('head');
    head.style.gridTemplateColumns = TEMPLATE;
    head.replaceChildren();
    COLUMNS.forEach(function (c) {
      var h = el('span', c.num ? 'num' : '', c.label);
      h.setAttribute('role', 'columnheader');
      h.setAttribute('data-key', c.key);
      h.tabIndex = 0;
      if (c.method === S.m) h.title = 'the score the range filters';
      if (S.sort === c.key) h.setAttribute('aria-sort', S.asc ? 'ascending' : 'descending');
      head.appendChild(h);
    });
  }
  function badge(im) {
    var d = decisionOf(im.id, null), span = el('span');
    if (d) {
      var stale = d.sha && d.sha !== im.sha;
      span.className = 'badge ' + (stale ? 'stale' : d.d);
      span.textContent = d.d;
      if (stale) span.title = 'decided about another version of the mask';
    } else if (store[im.id]) {
      span.textContent = 'regions';
      span.className = 'badge part';
      span.title = 'decisions about regions only';
    }
    return span;
  }
  function rowEl(p) {
    var im = IM[view[p]], r = el('div', 'row');
    r.setAttribute('role', 'row');
    r.setAttribute('data-pos', p);
    r.setAttribute('data-id', im.id);
    r.style.top = p * ROW + 'px';
    r.style.gridTemplateColumns = TEMPLATE;
    var v = im.s[0];
    if (v !== null && v < D.threshold) r.className += ' below';
    if (p === cur) r.className += ' current';
    COLUMNS.forEach(function (c) {
      var cell;
      if (c.key === 'dec') cell = badge(im);
      else {
        cell = el('span', c.num ? 'num' : '', c.show(im));
        if (c.key === 'id') cell.title = im.id;
      }
      cell.setAttribute('role', 'gridcell');
      r.appendChild(cell);
    });
    return r;
  }
  var pending = false;
  function renderRows() {
    var box = $('rows'), top = box.scrollTop, h = box.clientHeight || 336;
    var first = Math.max(0, Math.floor(top / ROW) - 6), last = Math.min(view.length, Math.ceil((top + h) / ROW) + 6);
    var frag = document.createDocumentFragment();
    for (var p = first; p < last; p++) frag.appendChild(rowEl(p));
    $('body').replaceChildren(frag);
    status();
  }
  function status() {
    var counts = {ok: 0, fix: 0, skip: 0}, regions = 0;
    Object.keys(store).forEach(function (id) {
      Object.keys(store[id]).forEach(function (k) { if (k === '') counts[store[id][k].d]++; else regions++; });
    });
    $('status').textContent = view.length.toLocaleString('en-US') + ' of ' + IM.length.toLocaleString('en-US') +
      ' images shown · decided: ' + counts.ok + ' ok, ' + counts.fix + ' fix, ' + counts.skip + ' skip, ' +
      regions + ' region(s)' + (message ? ' · ' + message : '');
  }
  function scrollToCurrent() {
    var box = $('rows'), h = box.clientHeight || 336;
    if (cur * ROW < box.scrollTop) box.scrollTop = cur * ROW;
    else if ((cur + 1) * ROW > box.scrollTop + h) box.scrollTop = (cur + 1) * ROW - h;
  }
  function select(p, keepTarget) {
    if (p < 0 || p >= view.length) return;
    if (p !== cur || !keepTarget) target = null;
    cur = p;
    scrollToCurrent();
    renderRows();
    renderDetail();
    if (history.replaceState) history.replaceState(null, '', '#r' + IM[view[p]].rank);
  }

  /* --- the selected image: facts, decisions, overlay, regions --- */
  function renderDetail() {
    var box = $('detail');
    box.replaceChildren();
    if (cur < 0 || cur >= view.length) { box.appendChild(el('p', 'missing', 'No image matches the filters.')); return; }
    var im = IM[view[cur]];
    var h = el('h3');
    h.appendChild(el('span', 'rank', '#' + im.rank + ' '));
    h.appendChild(el('code', '', im.id));
    box.appendChild(h);
    var facts = el('p', 'facts');
    METHODS.forEach(function (m, i) {
      if (i) facts.appendChild(document.createTextNode(' · '));
      facts.appendChild(document.createTextNode(m + ' '));
      facts.appendChild(el('b', '', fmtScore(im.s[i]) || 'none'));
    });
    if (im.low !== null && im.low !== undefined && im.px)
      facts.appendChild(document.createTextNode(' · ' + fmtInt(im.low) + ' of ' + fmtInt(im.px) + ' px low (' +
                                                lowShare(im).toFixed(1) + ' %)'));
    if (im.sus) {
      facts.appendChild(document.createTextNode(' · annotated '));
      facts.appendChild(el('b', '', im.sus));
      facts.appendChild(document.createTextNode(im.lik && im.lik !== im.sus ? ', looks like ' : ', unsure'));
      if (im.lik && im.lik !== im.sus) facts.appendChild(el('b', '', im.lik));
    }
    facts.appendChild(document.createTextNode(' · mask ' + (im.sha ? 'sha256 ' + im.sha.slice(0, 12) + '…' : 'not hashed')));
    box.appendChild(facts);

    var bar = el('div', 'decide'), d = decisionOf(im.id, target);
    var what = target === null ? 'whole image' : 'region #' + target;
    bar.appendChild(el('span', 'target', what + ':'));
    [['ok', 'o'], ['fix', 'f'], ['skip', 's']].forEach(function (b) {
      var btn = el('button', b[0] + (d && d.d === b[0] ? ' on' : ''), b[0] + ' (' + b[1] + ')');
      btn.type = 'button';
      btn.setAttribute('data-decision', b[0]);
      if (b[0] === 'ok' && target === null && !im.sha) { btn.disabled = true; btn.title = 'no mask hash in this report'; }
      btn.addEventListener('click', function () { act(b[0]); });
      bar.appendChild(btn);
    });
    var clear = el('button', '', 'clear (u)');
    clear.type = 'button';
    clear.addEventListener('click', function () { act(null); });
    bar.appendChild(clear);
    var note = el('input', 'note');
    note.id = 'note';
    note.placeholder = 'note (e)';
    note.value = d ? d.note || '' : '';
    note.addEventListener('input', function () { setNote(im, target, note.value); });
    note.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === 'Escape') { note.blur(); e.preventDefault(); } });
    bar.appendChild(note);
    if (d && d.sha && d.sha !== im.sha) bar.appendChild(el('span', 'badge stale', 'stale: the mask changed since'));
    box.appendChild(bar);

    if (im.ov) {
      var img = el('img');  /* decoded only now, for the selected image */
      img.width = im.ov[1];
      img.height = im.ov[2];
      img.alt = 'overlay of ' + im.id;
      img.src = im.ov[0];
      box.appendChild(img);
    } else {
      box.appendChild(el('p', 'missing', im.rank <= D.top ? 'no overlay (run segaudit overlay --top ' + D.top + ')'
                                                       : 'no overlay (beyond --top ' + D.top + ')'));
    }
    if (im.reg) {
      if (!im.reg.length) box.appendChild(el('p', 'no-regions', 'no error regions in ' + D.regions));
      else box.appendChild(regionTable(im));
    } else if (im.nreg) {
      box.appendChild(el('p', 'no-regions', im.nreg + ' region(s) scoring ≥ ' +
                                             (D.region_threshold === null || D.region_threshold === undefined ? '0.5' : D.region_threshold.toFixed(3)) +
                                             (im.worst ? ' (worst: ' + im.worst + ')' : '') +
                                             '; pass --regions regions.csv to list them and decide about each'));
    }
  }
  function regionTable(im) {
    var t = el('table', 'regions'), head = el('tr');
    ['region', 'kind', 'annotated → likely', 'area (px)', 'score', 'box x0,y0–x1,y1', 'decision'].forEach(function (h, i) {
      head.appendChild(el('th', i === 0 || i === 3 || i === 4 ? 'num' : '', h));
    });
    var thead = el('thead'); thead.appendChild(head); t.appendChild(thead);
    var body = el('tbody');
    var limit = D.region_threshold, below = 0;
    im.reg.forEach(function (r) {
      // Regions below the threshold are not suspect: listed only on demand.
      if (limit !== null && limit !== undefined && r[5] < limit && !showAllRegions && target !== r[0]) { below++; return; }
      var tr = el('tr', target === r[0] ? 'target' : '');
      tr.setAttribute('data-region', r[0]);
      tr.appendChild(el('td', 'num', '#' + r[0]));
      tr.appendChild(el('td', '', r[1]));
      tr.appendChild(el('td', '', r[2] + ' → ' + r[3]));
      tr.appendChild(el('td', 'num', fmtInt(r[4])));
      tr.appendChild(el('td', 'num', fmtRegionScore(r[5])));
      var box = el('td'); box.appendChild(el('code', '', r[6] + ',' + r[7] + '–' + r[8] + ',' + r[9])); tr.appendChild(box);
      var dd = decisionOf(im.id, r[0]), cell = el('td');
      if (dd) cell.appendChild(el('span', 'badge ' + dd.d, dd.d));
      tr.appendChild(cell);
      tr.addEventListener('click', function () { target = target === r[0] ? null : r[0]; renderDetail(); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    var wrap = el('div');
    wrap.appendChild(t);
    if (limit !== null && limit !== undefined && (below || showAllRegions)) {
      var toggle = el('p', 'no-regions show-all', showAllRegions
        ? 'hide the regions below the threshold ' + limit.toFixed(3)
        : 'show ' + below + ' more region(s) below the threshold ' + limit.toFixed(3));
      toggle.addEventListener('click', function () { showAllRegions = !showAllRegions; renderDetail(); });
      wrap.appendChild(toggle);
    }
    if (im.more) wrap.appendChild(el('p', 'no-regions', 'and ' + im.more + ' more region(s) in ' + D.regions));
    return wrap;
  }
  function act(d) {
    if (cur < 0) return;
    var im = IM[view[cur]], whole = target === null;
    if (!decide(im, target, d)) { status(); return; }
    if (whole && d !== null && cur + 1 < view.length) { select(cur + 1); return; }  /* on to the next image */
    renderRows();
    renderDetail();
  }
  function nextUndecided(step) {
    for (var p = cur + step; p >= 0 && p < view.length; p += step) if (!store[IM[view[p]].id]) { select(p); return; }
  }

  /* --- controls --- */
  var methodSelect = $('method');
  METHODS.forEach(function (m, i) { var o = el('option', '', m); o.value = i; methodSelect.appendChild(o); });
  D.classes.forEach(function (c) { var o = el('option', '', c); o.value = c; $('cls').appendChild(o); });
  D.kinds.forEach(function (k) { var o = el('option', '', k); o.value = k; $('kind').appendChild(o); });
  function number(id) { var v = $(id).value.trim(); return v === '' ? NaN : parseFloat(v); }
  function readControls() {
    S.q = $('q').value.trim().toLowerCase();
    S.cls = $('cls').value; S.side = $('side').value; S.kind = $('kind').value;
    S.lo = number('lo'); S.hi = number('hi'); S.dec = $('dec').value;
    S.bin = null;  /* typed bounds: inclusive at both ends */
  }
  var timer = null;
  $('q').addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(function () { readControls(); refilter(true); }, 80); });
  ['cls', 'side', 'kind', 'lo', 'hi', 'dec'].forEach(function (id) {
    $(id).addEventListener('change', function () { readControls(); refilter(true); });
  });
  methodSelect.addEventListener('change', function () {
    S.m = parseInt(methodSelect.value, 10); S.sort = 'm' + S.m; S.asc = true;
    S.bin = null;  /* a bar's bins are the first method's: the range boxes apply, inclusive */
    refilter(true);
  });
  $('reset').addEventListener('click', function () {
    ['q', 'lo', 'hi'].forEach(function (id) { $(id).value = ''; });
    $('cls').value = ''; $('side').value = 'either'; $('kind').value = ''; $('dec').value = 'all';
    readControls(); refilter(true);
  });
  $('download').addEventListener('click', download);
  function sortBy(key) {
    if (S.sort === key) S.asc = !S.asc; else { S.sort = key; S.asc = true; }
    refilter(true);
  }
  $('head').addEventListener('click', function (e) { var k = e.target.getAttribute('data-key'); if (k) sortBy(k); });
  $('head').addEventListener('keydown', function (e) {
    var k = e.target.getAttribute('data-key');
    if (k && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); sortBy(k); }
  });
  $('rows').addEventListener('scroll', function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; renderRows(); });
  });
  $('body').addEventListener('click', function (e) {
    var r = e.target.closest('.row');
    if (r) select(parseInt(r.getAttribute('data-pos'), 10));
  });
  document.querySelectorAll('svg.histogram rect[data-lo]').forEach(function (bar) {
    bar.addEventListener('click', function () {
      $('lo').value = bar.getAttribute('data-lo'); $('hi').value = bar.getAttribute('data-hi');
      methodSelect.value = '0'; S.m = 0; readControls();
      var svg = bar.ownerSVGElement;  /* exactly the bar's images, binned as the histogram bins them */
      S.bin = {n: parseInt(bar.getAttribute('data-bin'), 10), low: parseFloat(svg.getAttribute('data-low')),
               span: parseFloat(svg.getAttribute('data-span')), bins: parseInt(svg.getAttribute('data-bins'), 10)};
      refilter(false);
      $('review').scrollIntoView();
    });
  });
  function fromHash() {
    var m = /^#r(\d+)$/.exec(location.hash);
    if (!m) return false;
    var rank = parseInt(m[1], 10);
    for (var p = 0; p < view.length; p++) if (IM[view[p]].rank === rank) { select(p); $('review').scrollIntoView(); return true; }
    return false;
  }
  window.addEventListener('hashchange', fromHash);
  document.addEventListener('keydown', function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = e.target.tagName;
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') {
      if (e.key === 'Escape') e.target.blur();
      return;
    }
    if (tag === 'BUTTON' && (e.key === 'Enter' || e.key === ' ')) return;
    var k = e.key, handled = true;
    if (k === 'j' || k === 'ArrowDown') select(cur + 1);
    else if (k === 'k' || k === 'ArrowUp') select(cur - 1);
    else if (k === 'n') nextUndecided(1);
    else if (k === 'p') nextUndecided(-1);
    else if (k === 'o') act('ok');
    else if (k === 'f') act('fix');
    else if (k === 's') act('skip');
    else if (k === 'u' || k === 'Delete' || k === 'Backspace') act(null);
    else if (k === 'e') { if ($('note')) $('note').focus(); }
    else if (k === '/') $('q').focus();
    else if (k === 'Escape' || k === '0') { target = null; renderDetail(); }
    else if (/^[1-9]$/.test(k) && cur >= 0) {
      var im = IM[view[cur]], n = parseInt(k, 10);
      if (im.reg && im.reg.some(function (r) { return r[0] === n; })) { target = n; renderDetail(); }
    } else handled = false;
    if (handled) e.preventDefault();
  });
  readControls();
  refilter(false);
  fromHash();
  document.documentElement.setAttribute('data-ready', IM.length);
  if (window.performance && performance.mark) performance.mark('segaudit-ready');  /* benchmarks/report_load.py */
})();
