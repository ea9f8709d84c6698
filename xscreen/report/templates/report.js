// The films table and the flagged gallery, built from the JSON block above: plain DOM, no library,
// no network. Filters and sort live in the URL hash (#flag=flagged&sort=prob_covid&dir=desc), so a
// view can be bookmarked or shared, and rows are added a page at a time so 10,000 films stay fast.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var labels = data.labels, rows = data.rows, thumbs = data.thumbs;
  var P = {path: 0, status: 1, prediction: 2, probs: 3, flag: 4, error: 5, thumb: 6, link: 7, scope_score: 8,
           margin: 9};
  var state = {flag: "", label: "", status: "", pmin: "", q: "", sort: "", dir: "asc"};
  var shown = 0, matching = [], galleryShown = 0;
  // The gallery: most uncertain first (smallest distance to the review threshold), then file order.
  function uncertainty(r) { return r[P.margin] === null || r[P.margin] === undefined ? Infinity : Math.abs(r[P.margin]); }
  var flaggedWithThumb = rows.filter(function (r) { return r[P.thumb] >= 0; })
    .map(function (r, i) { return [uncertainty(r), i, r]; })
    .sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; })
    .map(function (entry) { return entry[2]; });
  var anyOutOfScope = rows.some(function (r) { return r[P.status] === "out_of_scope"; });
  var tbody = document.querySelector("#results tbody");

  var columns = [
    {key: "thumb", title: "heatmap", sortable: false},
    {key: "path", title: "file"},
    {key: "status", title: "status"},
    {key: "prediction", title: "prediction"}
  ].concat(labels.map(function (label, i) {
    return {key: "prob_" + label, title: "p(" + label + ")", prob: i};
  })).concat([{key: "flag", title: "flag"}])
    .concat(data.scope ? [{key: "scope_score", title: "scope score"}] : [])
    .concat(anyOutOfScope ? [{key: "scope_reason", title: "out of scope because"}] : [])
    .concat([{key: "error", title: "error"}]);

  function value(row, column) {
    if (column.prob !== undefined) { return row[P.probs] ? row[P.probs][column.prob] : null; }
    if (column.key === "flag") { return row[P.flag] === null ? null : (row[P.flag] ? 1 : 0); }
    // One text field in the file, two headings here: why a film failed, and why it was out of scope.
    if (column.key === "scope_reason") { return row[P.status] === "out_of_scope" ? row[P.error] : null; }
    if (column.key === "error") { return row[P.status] === "out_of_scope" ? null : row[P.error]; }
    return row[P[column.key]];
  }

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    Object.keys(state).forEach(function (key) { state[key] = params.get(key) || (key === "dir" ? "asc" : ""); });
  }

  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(state).forEach(function (key) {
      if (state[key] && !(key === "dir" && state[key] === "asc")) { params.set(key, state[key]); }
    });
    var hash = params.toString();
    try { history.replaceState(null, "", hash ? "#" + hash : location.pathname); } catch (e) { /* some file:// setups */ }
  }

  function predictedProbability(row) {
    return row[P.probs] ? row[P.probs][labels.indexOf(row[P.prediction])] : null;
  }

  function filtered() {
    var q = state.q.toLowerCase(), pmin = parseFloat(state.pmin);
    var out = rows.filter(function (row) {
      if (state.flag === "flagged" && row[P.flag] !== true) { return false; }
      if (state.flag === "not-flagged" && row[P.flag] !== false) { return false; }
      if (state.label && row[P.prediction] !== state.label) { return false; }
      if (state.status && row[P.status] !== state.status) { return false; }
      if (!isNaN(pmin) && !(predictedProbability(row) >= pmin)) { return false; }
      if (q && row[P.path].toLowerCase().indexOf(q) < 0 && (row[P.error] || "").toLowerCase().indexOf(q) < 0) { return false; }
      return true;
    });
    var column = columns.filter(function (c) { return c.key === state.sort; })[0];
    if (column) {
      var sign = state.dir === "desc" ? -1 : 1;
      out.sort(function (a, b) {
        var x = value(a, column), y = value(b, column);
        if (x === y) { return 0; }
        if (x === null || x === undefined) { return 1; }  // empty cells last, either way
        if (y === null || y === undefined) { return -1; }
        return (x < y ? -1 : 1) * sign;
      });
    }
    return out;
  }

  function cell(tr, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    tr.appendChild(td);
    return td;
  }

  // A path may break after a separator, never inside a name.
  function pathCell(tr, path) {
    var td = cell(tr, "", "path");
    path.split(/([\/\\])/).forEach(function (part) {
      td.appendChild(document.createTextNode(part));
      if (part === "/" || part === "\\") { td.appendChild(document.createElement("wbr")); }
    });
    return td;
  }

  function image(index, alt) {
    var img = document.createElement("img");
    img.src = thumbs[index];
    img.alt = alt;
    img.loading = "lazy";
    return img;
  }

  function renderRows(count) {
    var fragment = document.createDocumentFragment();
    matching.slice(shown, shown + count).forEach(function (row) {
      var tr = document.createElement("tr");
      tr.className = (row[P.flag] ? "flagged " : "") +
        ({error: "error", out_of_scope: "out-of-scope"}[row[P.status]] || "");
      var td = cell(tr, "");
      if (row[P.thumb] >= 0) {
        var a = document.createElement("a");
        a.href = "#film-" + row[P.thumb];
        a.addEventListener("click", function (event) {
          event.preventDefault();
          var card = document.getElementById("film-" + row[P.thumb]);
          if (card) { card.scrollIntoView(); }
        });
        a.appendChild(image(row[P.thumb], "heatmap of " + row[P.path]));
        td.appendChild(a);
      }
      pathCell(tr, row[P.path]);
      cell(tr, row[P.status]);
      cell(tr, row[P.prediction] || "");
      labels.forEach(function (_, i) { cell(tr, row[P.probs] ? row[P.probs][i].toFixed(3) : "", "num"); });
      cell(tr, row[P.flag] === null ? "" : (row[P.flag] ? "review" : "no"), "flag");
      if (data.scope) { cell(tr, row[P.scope_score] === null ? "" : row[P.scope_score].toFixed(2), "num"); }
      if (anyOutOfScope) { cell(tr, value(row, {key: "scope_reason"}) || "", "reason"); }
      cell(tr, value(row, {key: "error"}) || "");
      fragment.appendChild(tr);
    });
    tbody.appendChild(fragment);
    shown = Math.min(matching.length, shown + count);
    var counter = document.getElementById("count");
    counter.textContent = "Showing " + shown.toLocaleString() + " of " + matching.length.toLocaleString() +
      " matching films (" + rows.length.toLocaleString() + " in all).";
    counter.dataset.shown = shown;
    counter.dataset.matching = matching.length;
    document.getElementById("more").hidden = shown >= matching.length;
    document.getElementById("all").hidden = shown >= matching.length;
  }

  function refresh() {
    matching = filtered();
    tbody.textContent = "";
    shown = 0;
    renderRows(data.page);
    document.querySelectorAll("#head th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort ? (state.dir === "desc" ? "descending" : "ascending") : "none");
    });
    ["flag", "label", "status", "pmin", "q"].forEach(function (key) {
      document.getElementById("f-" + key).value = state[key];
    });
  }

  function renderGallery(count) {
    var gallery = document.getElementById("gallery"), fragment = document.createDocumentFragment();
    flaggedWithThumb.slice(galleryShown, galleryShown + count).forEach(function (row) {
      var figure = document.createElement("figure");
      figure.className = "film";
      figure.id = "film-" + row[P.thumb];
      var link = row[P.link];
      var holder = figure;
      if (link) {
        holder = document.createElement("a");
        holder.href = link;  // the full-size heatmap PNG, in the folder next to this report
        figure.appendChild(holder);
      }
      holder.appendChild(image(row[P.thumb], "heatmap of " + row[P.path]));
      var caption = document.createElement("figcaption");
      caption.textContent = row[P.path] + ": " + row[P.prediction] + " " + predictedProbability(row).toFixed(2);
      figure.appendChild(caption);
      fragment.appendChild(figure);
    });
    gallery.appendChild(fragment);
    galleryShown = Math.min(flaggedWithThumb.length, galleryShown + count);
    document.getElementById("gallery-more").hidden = galleryShown >= flaggedWithThumb.length;
  }

  function setUp() {
    var head = document.getElementById("head");
    columns.forEach(function (column) {
      var th = document.createElement("th");
      th.textContent = column.title;
      th.dataset.key = column.key;
      th.scope = "col";
      if (column.sortable !== false) {
        th.addEventListener("click", function () {
          state.dir = state.sort === column.key && state.dir === "asc" ? "desc" : "asc";
          state.sort = column.key;
          writeHash();
          refresh();
        });
      }
      head.appendChild(th);
    });
    function options(select, values) {
      values.forEach(function (v) {
        var option = document.createElement("option");
        option.value = option.textContent = v;
        select.appendChild(option);
      });
    }
    options(document.getElementById("f-label"), labels);
    options(document.getElementById("f-status"),
            rows.map(function (r) { return r[P.status]; }).filter(function (v, i, all) { return all.indexOf(v) === i; }));
    ["flag", "label", "status", "pmin", "q"].forEach(function (key) {
      document.getElementById("f-" + key).addEventListener("input", function (event) {
        state[key] = event.target.value;
        writeHash();
        refresh();
      });
    });
    document.getElementById("filters").addEventListener("submit", function (event) { event.preventDefault(); });
    document.getElementById("more").addEventListener("click", function () { renderRows(data.page); });
    document.getElementById("all").addEventListener("click", function () { renderRows(matching.length); });
    document.getElementById("gallery-more").addEventListener("click", function () { renderGallery(data.gallery_page); });
    window.addEventListener("hashchange", function () { readHash(); refresh(); });
    readHash();
    refresh();
    renderGallery(data.gallery_page);
  }

  setUp();
}());
