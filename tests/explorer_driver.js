/* Drives a page's trial explorer the way a reader would (tests/test_explorer_browser.py injects it into a copy
   of the page): every alignment, each filter, a click on a cell of each heatmap, then one trial opened. What
   the page showed is written as JSON into a new pre element, #test-out. */
window.addEventListener("load", function () {
  "use strict";
  var out = { ready: document.getElementById("explorer").getAttribute("data-ready"), alignments: [] };
  function byId(id) { return document.getElementById(id); }
  function fire(node) { node.dispatchEvent(new Event("change")); node.dispatchEvent(new Event("input")); }
  function rows() {
    return Array.prototype.map.call(document.querySelectorAll("#trial-list tr.trial"),
                                    function (r) { return Number(r.getAttribute("data-pair")); });
  }
  function texts(selector) {
    return Array.prototype.map.call(document.querySelectorAll(selector), function (n) { return n.textContent; });
  }
  var pick = byId("trial-alignment");
  for (var i = 0; i < pick.options.length; i++) {
    pick.value = String(i); fire(pick);
    out.alignments.push({ label: pick.options[i].textContent, note: byId("trial-note").textContent,
                          shown: byId("trial-count").textContent, rows: rows() });
  }
  pick.value = String(window.TEST_ALIGNMENT); fire(pick);
  out.filters = {};
  ["f-failed", "f-nontrivial", "f-distinguishing"].forEach(function (id) {
    byId(id).checked = true; fire(byId(id));
    out.filters[id] = rows();
    byId(id).checked = false; fire(byId(id));
  });
  out.phase = {};
  Array.prototype.forEach.call(byId("f-phase").options, function (o) {
    byId("f-phase").value = o.value; fire(byId("f-phase"));
    out.phase[o.value] = rows();
  });
  byId("f-phase").value = ""; fire(byId("f-phase"));
  byId("f-count-min").value = "2"; byId("f-count-max").value = "3"; fire(byId("f-count-max"));
  out.counts = rows();
  byId("f-count-min").value = ""; byId("f-count-max").value = ""; fire(byId("f-count-max"));
  out.cells = [];
  ["#heat-count td.cell", "#heat-phase td.cell"].forEach(function (selector) {
    var cells = document.querySelectorAll(selector);
    [cells[0], cells[cells.length - 1]].forEach(function (td) {
      td.click();
      out.cells.push({ kind: td.getAttribute("data-kind"), a: td.getAttribute("data-a"), b: td.getAttribute("data-b"),
                       text: td.textContent, chip: byId("f-cell").textContent, rows: rows() });
      byId("f-cell-clear").click();
    });
  });
  out.after_clear = rows().length;
  byId("f-failed").checked = true; fire(byId("f-failed"));
  var first = document.querySelector("#trial-list tr.trial");
  first.click();
  var detail = { pair: Number(byId("trial-detail").getAttribute("data-pair")), rows: {} };
  ["base", "source"].forEach(function (name) {
    detail[name] = texts("#detail-" + name + " .tok");
    detail[name + "_swap"] = Array.prototype.map.call(document.querySelectorAll("#detail-" + name + " .tok"),
      function (n) { return n.classList.contains("swap"); }).indexOf(true);
  });
  Array.prototype.forEach.call(document.querySelectorAll("#detail-cont tr[data-row]"), function (tr) {
    detail.rows[tr.getAttribute("data-row")] = Array.prototype.map.call(tr.querySelectorAll("td"), function (td) {
      return [td.textContent, td.classList.contains("diff")];
    });
  });
  out.detail = detail;
  var pre = document.createElement("pre");
  pre.id = "test-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
