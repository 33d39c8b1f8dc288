/* numvars trial explorer: reads the JSON in #trial-data and builds the explorer inside #explorer.
   Every value from the data is written with textContent, never as markup. */
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  var source = document.getElementById("trial-data");
  if (!root || !source) { return; }
  var data = JSON.parse(source.textContent);
  var PHASES = ["demo", "T", "response"];
  var state = { a: 0, cell: null };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function byId(id) { return document.getElementById(id); }
  function words(codes) {
    return (codes || "").split("").map(function (c) { return data.tokens[data.alphabet.indexOf(c)] || "?"; });
  }
  function fixed(x) { return x === null || x === undefined ? "—" : Number(x).toFixed(2); }
  function alignment() { return data.alignments[state.a]; }

  // --- controls ---------------------------------------------------------------------------------------
  root.textContent = "";
  var bar = add(root, el("div", { "class": "controls" }));
  var pick = add(add(bar, el("label", {}, "Alignment ")), el("select", { id: "trial-alignment" }));
  data.alignments.forEach(function (a, i) {
    add(pick, el("option", { value: String(i) }, a.label + " (" + a.trials.length + " trials)"));
  });
  function box(id, text) {
    var label = add(bar, el("label", {}));
    add(label, el("input", { type: "checkbox", id: id }));
    label.appendChild(document.createTextNode(" " + text));
  }
  box("f-failed", "failed only");
  box("f-nontrivial", "non-trivial");
  box("f-distinguishing", "distinguishing");
  var phase = add(add(bar, el("label", {}, "phase of t ← u ")), el("select", { id: "f-phase" }));
  add(phase, el("option", { value: "" }, "any"));
  PHASES.forEach(function (t) {
    PHASES.forEach(function (u) { add(phase, el("option", { value: t + "|" + u }, t + " ← " + u)); });
  });
  var counts = add(bar, el("label", {}, "counts "));
  add(counts, el("input", { type: "number", id: "f-count-min", min: "0", placeholder: "from", "class": "count" }));
  counts.appendChild(document.createTextNode(" – "));
  add(counts, el("input", { type: "number", id: "f-count-max", min: "0", placeholder: "to", "class": "count" }));
  var chip = add(bar, el("span", { id: "f-cell", "class": "chip", hidden: "" }));
  var clear = add(bar, el("button", { id: "f-cell-clear", type: "button", hidden: "" }, "all cells"));
  var note = add(root, el("p", { id: "trial-note", "class": "empty" }));
  var maps = add(root, el("div", { "class": "heatmaps" }));
  var heatCount = add(maps, el("table", { id: "heat-count", "class": "heat" }));
  var heatPhase = add(maps, el("table", { id: "heat-phase", "class": "heat" }));
  var shown = add(root, el("p", { id: "trial-count", "class": "sub" }));
  var list = add(add(root, el("div", { "class": "list-box" })), el("table", { id: "trial-list", "class": "trials" }));
  var detail = add(root, el("div", { id: "trial-detail", "class": "detail" }));

  // --- filters ----------------------------------------------------------------------------------------
  function number(id) { var v = byId(id).value; return v === "" ? null : Number(v); }
  function passes(tr) {
    if (byId("f-failed").checked && (tr.f & 1)) { return false; }
    if (byId("f-nontrivial").checked && (tr.f & 4)) { return false; }
    if (byId("f-distinguishing").checked && !(tr.f & 8)) { return false; }
    var pp = byId("f-phase").value;
    if (pp && tr.pt + "|" + tr.pu !== pp) { return false; }
    var lo = number("f-count-min"), hi = number("f-count-max");
    if (lo !== null && (tr.bc < lo || tr.sc < lo)) { return false; }
    if (hi !== null && (tr.bc > hi || tr.sc > hi)) { return false; }
    var c = state.cell;
    if (c && c.kind === "count" && (String(tr.bv) !== c.a || String(tr.sv) !== c.b)) { return false; }
    if (c && c.kind === "phase" && (tr.pt !== c.a || tr.pu !== c.b)) { return false; }
    return true;
  }

  // --- heatmaps -----------------------------------------------------------------------------------------
  function heatmap(table, kind, cells, title, rowsName, colsName) {
    table.textContent = "";
    if (!cells.length) { return; }
    add(table, el("caption", {}, title));
    var rows = [], cols = [], at = {};
    cells.forEach(function (c) {
      if (rows.indexOf(c[0]) < 0) { rows.push(c[0]); }
      if (cols.indexOf(c[1]) < 0) { cols.push(c[1]); }
      at[c[0] + "|" + c[1]] = c;
    });
    var order = kind === "phase" ? function (x, y) { return PHASES.indexOf(x) - PHASES.indexOf(y); }
                                 : function (x, y) { return x - y; };
    rows.sort(order); cols.sort(order);
    var head = add(table, el("tr", {}));
    add(head, el("th", {}, rowsName + " \\ " + colsName));
    cols.forEach(function (b) { add(head, el("th", {}, b)); });
    rows.forEach(function (a) {
      var tr = add(table, el("tr", {}));
      add(tr, el("th", {}, a));
      cols.forEach(function (b) {
        var c = at[a + "|" + b];
        if (!c) { add(tr, el("td", { "class": "none" })); return; }
        var td = add(tr, el("td", { "class": "cell", "data-kind": kind, "data-a": String(a), "data-b": String(b),
                                    title: c[3] + " test pairs, IIA " + fixed(c[2]) }, fixed(c[2])));
        var v = c[2] === null ? 0.5 : c[2];
        td.style.background = "hsl(" + Math.round(120 * v) + ",55%," + Math.round(88 - 18 * v) + "%)";
        td.addEventListener("click", function () {
          state.cell = { kind: kind, a: String(a), b: String(b) };
          render();
        });
      });
    });
  }

  // --- the list and one trial ---------------------------------------------------------------------------
  function flagsText(tr) {
    return [tr.f & 4 ? "trivial" : "", tr.f & 8 ? "distinguishing" : ""].filter(Boolean).join(", ");
  }
  function renderList() {
    var a = alignment(), rows = a.trials.filter(passes);
    list.textContent = "";
    shown.textContent = rows.length + " of " + a.trials.length + " saved trials shown";
    if (!a.trials.length) { return; }
    var head = add(list, el("tr", {}));
    ["pair", "verdict", "free-running", "swap", "t", "u", "counts", "log-prob", ""].forEach(function (h) {
      add(head, el("th", {}, h));
    });
    rows.forEach(function (tr) {
      var row = add(list, el("tr", { "class": "trial", "data-pair": String(tr.p) }));
      [tr.p, tr.f & 1 ? "right" : "wrong", tr.f & 2 ? "right" : "wrong", tr.v + " " + tr.bv + " ← " + tr.sv,
       tr.t + " (" + tr.pt + ")", tr.u + " (" + tr.pu + ")", tr.bc + " / " + tr.sc, fixed(tr.lp), flagsText(tr)]
        .forEach(function (v, i) { add(row, el("td", i === 1 ? { "class": tr.f & 1 ? "match" : "mismatch" } : {}, v)); });
      row.addEventListener("click", function () { open(tr); });
    });
    if (rows.length && !detail.firstChild) { open(rows[0]); }    // something to read from the start
  }
  function sequence(name, codes, at) {
    var line = add(detail, el("div", { "class": "seq", id: "detail-" + name }));
    add(line, el("span", { "class": "label" }, name));
    words(codes).forEach(function (w, i) { add(line, el("span", { "class": i === at ? "tok swap" : "tok" }, w)); });
  }
  function open(tr) {
    var a = alignment(), expected = words(tr.e), scored = tr.m.split("").map(function (c) { return c === "1"; });
    detail.textContent = "";
    detail.setAttribute("data-pair", String(tr.p));
    add(detail, el("h3", {}, "Pair " + tr.p + ": " + (tr.f & 1 ? "right" : "wrong") + " (free-running " +
                   (tr.f & 2 ? "right" : "wrong") + "); " + tr.v + " " + tr.bv + " ← " + tr.sv + "; log-prob " +
                   fixed(tr.lp) + (flagsText(tr) ? "; " + flagsText(tr) : "")));
    sequence("base", tr.b, tr.t);
    sequence("source", tr.s, tr.u);
    var table = add(detail, el("table", { id: "detail-cont", "class": "cont" }));
    var head = add(table, el("tr", {}));
    add(head, el("th", {}, "after t"));
    var longest = Math.max.apply(null, [tr.e, tr.y, tr.z].concat(tr.P).map(function (c) { return (c || "").length; }));
    for (var i = 0; i < longest; i++) { add(head, el("th", {}, "+" + (i + 1))); }
    function row(key, label, toks, model) {
      var r = add(table, el("tr", { "data-row": key }));
      add(r, el("th", {}, label));
      toks.forEach(function (w, i) {
        var forced = i < scored.length && !scored[i];
        var cls = "tok" + (forced ? " forced" : "") + (w !== expected[i] && !(model && forced) ? " diff" : "");
        add(r, el("td", { "class": cls }, model && forced ? "·" : w));
      });
    }
    row("expected", "expected (scored)", expected, false);
    row("model", "model, teacher-forced", words(tr.y), true);
    row("model_free", "model, free-running", words(tr.z), true);
    a.programs.forEach(function (name, i) { if (tr.P[i] !== null) { row("program:" + name, name, words(tr.P[i]), false); } });
    var lp = add(table, el("tr", { "data-row": "logprob" }));
    add(lp, el("th", {}, "log-prob of expected"));
    tr.l.forEach(function (v) { add(lp, el("td", { "class": "num" }, v === null ? "" : fixed(v))); });
  }

  function render() {
    var a = alignment();
    note.textContent = a.note || (a.trials.length ? "" : "no trials saved for this alignment");
    heatmap(heatCount, "count", a.count, "IIA by the swapped value, base (rows) and source (columns)", "base", "source");
    heatmap(heatPhase, "phase", a.phase, "IIA by the phase of t (rows) and u (columns)", "t", "u");
    var c = state.cell;
    chip.hidden = clear.hidden = !c;
    chip.textContent = c ? (c.kind === "count" ? "cell: base " + c.a + ", source " + c.b
                                               : "cell: t in " + c.a + ", u in " + c.b) : "";
    renderList();
  }
  pick.addEventListener("change", function () {
    state.a = Number(pick.value); state.cell = null; detail.textContent = ""; render();
  });
  clear.addEventListener("click", function () { state.cell = null; render(); });
  ["f-failed", "f-nontrivial", "f-distinguishing", "f-phase", "f-count-min", "f-count-max"].forEach(function (id) {
    byId(id).addEventListener("change", renderList);
    byId(id).addEventListener("input", renderList);
  });
  render();
  root.setAttribute("data-ready", "1");
})();
