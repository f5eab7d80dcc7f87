/* etalon report: draws the charts described in the page's JSON data as inline SVG.
 * No library and no network: the page must open offline, years later, from a file.
 * Each chart: axes with linear or log scales, lines / steps / points, marks (vertical and
 * horizontal lines, shaded spans), a legend whose entries hide and show series, a hover
 * read-out of the nearest point, and (where offered) a log/linear switch for x. */
(function () {
  "use strict";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#17becf", "#7f7f7f", "#bcbd22"];
  var DASHES = ["", "6 3", "2 2", "8 3 2 3", "1 3"];
  var HEIGHT = 320, M = {l: 64, r: 18, t: 14, b: 46};

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "-";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function color(group) { return COLORS[((group % COLORS.length) + COLORS.length) % COLORS.length]; }

  /* nice tick values for [lo, hi] */
  function linearTicks(lo, hi) {
    var span = hi - lo, raw = span / 6, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (k) { return k * mag; })
      .filter(function (s) { return s >= raw; })[0] || raw;
    var out = [], v = Math.ceil(lo / step) * step;
    for (; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function logTicks(lo, hi) {
    var out = [], a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
    var mults = b - a <= 2 ? [1, 2, 5] : [1];
    for (var e = a; e <= b; e++) {
      mults.forEach(function (k) {
        var v = k * Math.pow(10, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
      });
    }
    return out.length >= 2 ? out : linearTicks(lo, hi);
  }

  function Scale(lo, hi, a, b, log) {
    if (log) {
      var l0 = Math.log10(lo), l1 = Math.log10(hi);
      this.map = function (v) { return a + (Math.log10(v) - l0) / (l1 - l0) * (b - a); };
      this.invert = function (p) { return Math.pow(10, l0 + (p - a) / (b - a) * (l1 - l0)); };
      this.ticks = function () { return logTicks(lo, hi); };
    } else {
      this.map = function (v) { return a + (v - lo) / (hi - lo) * (b - a); };
      this.invert = function (p) { return lo + (p - a) / (b - a) * (hi - lo); };
      this.ticks = function () { return linearTicks(lo, hi); };
    }
    this.ok = function (v) { return v !== null && isFinite(v) && (!log || v > 0); };
  }

  function extent(values, log, fixedLo, fixedHi) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) {
      if (v !== null && isFinite(v) && (!log || v > 0)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    });
    if (fixedLo !== null && fixedLo !== undefined && !log) lo = fixedLo;
    if (fixedHi !== null && fixedHi !== undefined) hi = Math.max(fixedHi, lo);
    if (!isFinite(lo) || !isFinite(hi)) return log ? [1, 10] : [0, 1];
    if (hi <= lo) {
      var fixed = fixedLo !== null && fixedLo !== undefined;
      if (log) { lo /= 2; hi *= 2; }
      else if (fixed) { hi = lo + (Math.abs(lo) || 1); }
      else { var d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    } else if (!log) {
      var pad = (hi - lo) * 0.03;
      if (fixedLo === null || fixedLo === undefined) lo -= pad;
      if (fixedHi === null || fixedHi === undefined) hi += pad;
    }
    return [lo, hi];
  }

  function Plot(root, spec) {
    this.root = root;
    this.spec = spec;
    this.hidden = {};
    this.xlog = !!spec.xlog;
    this.svgBox = root.querySelector(".plot");
    this.legend = root.querySelector(".legend");
    this.tip = root.querySelector(".tip");
    var self = this;
    var toggle = root.querySelector(".logx");
    if (toggle) {
      toggle.addEventListener("click", function () {
        self.xlog = !self.xlog;
        toggle.textContent = self.xlog ? "linear x" : "log x";
        self.draw();
      });
    }
  }

  Plot.prototype.visible = function () {
    var self = this;
    return this.spec.series.filter(function (s, i) { return !self.hidden[i]; });
  };

  Plot.prototype.draw = function () {
    var spec = this.spec, self = this;
    var width = Math.max(this.svgBox.clientWidth || 0, 480);
    var xs = [], ys = [];
    this.visible().forEach(function (s) { xs = xs.concat(s.x); ys = ys.concat(s.y); });
    spec.vlines.forEach(function (m) { xs.push(m.x); });
    spec.vspans.forEach(function (m) { xs.push(m.x0, m.x1); });
    spec.hlines.forEach(function (m) { ys.push(m.y); });
    var xe = extent(xs, this.xlog, null, null), ye = extent(ys, false, spec.ymin, spec.ymax);
    var x = new Scale(xe[0], xe[1], M.l, width - M.r, this.xlog);
    var y = new Scale(ye[0], ye[1], HEIGHT - M.b, M.t, false);
    this.x = x; this.y = y; this.width = width;
    var out = ['<svg class="chart-svg" width="' + width + '" height="' + HEIGHT +
               '" viewBox="0 0 ' + width + " " + HEIGHT + '" role="img">'];
    out.push('<rect x="' + M.l + '" y="' + M.t + '" width="' + (width - M.l - M.r) +
             '" height="' + (HEIGHT - M.t - M.b) + '" class="frame"/>');
    spec.vspans.forEach(function (m) {
      if (!x.ok(m.x0) || !x.ok(m.x1)) return;
      var a = x.map(m.x0), b = x.map(m.x1);
      out.push('<rect class="span" x="' + Math.min(a, b).toFixed(1) + '" y="' + M.t + '" width="' +
               Math.max(Math.abs(b - a), 1.5).toFixed(1) + '" height="' + (HEIGHT - M.t - M.b) +
               '" fill="' + color(m.group || 0) + '"><title>' + esc(m.label || "") + ": " +
               fmt(m.x0) + " - " + fmt(m.x1) + "</title></rect>");
    });
    x.ticks().forEach(function (v) {
      var p = x.map(v).toFixed(1);
      out.push('<line class="grid" x1="' + p + '" x2="' + p + '" y1="' + M.t + '" y2="' + (HEIGHT - M.b) + '"/>');
      out.push('<text class="tick" x="' + p + '" y="' + (HEIGHT - M.b + 15) + '" text-anchor="middle">' + fmt(v) + "</text>");
    });
    y.ticks().forEach(function (v) {
      var p = y.map(v).toFixed(1);
      out.push('<line class="grid" x1="' + M.l + '" x2="' + (width - M.r) + '" y1="' + p + '" y2="' + p + '"/>');
      out.push('<text class="tick" x="' + (M.l - 6) + '" y="' + p + '" dy="0.32em" text-anchor="end">' + fmt(v) + "</text>");
    });
    out.push('<text class="axis" x="' + ((M.l + width - M.r) / 2) + '" y="' + (HEIGHT - 8) +
             '" text-anchor="middle">' + esc(spec.xlabel) + "</text>");
    out.push('<text class="axis" transform="translate(14,' + ((M.t + HEIGHT - M.b) / 2) +
             ') rotate(-90)" text-anchor="middle">' + esc(spec.ylabel) + "</text>");
    spec.hlines.forEach(function (m) {
      if (m.y < ye[0] || m.y > ye[1]) return;
      var p = y.map(m.y).toFixed(1);
      out.push('<line class="hmark" x1="' + M.l + '" x2="' + (width - M.r) + '" y1="' + p + '" y2="' + p + '"/>');
    });
    var seen = {};
    spec.series.forEach(function (s, i) {
      if (self.hidden[i]) return;
      var n = seen[s.group] = (seen[s.group] || 0) + 1;
      out.push(self.seriesMarkup(s, color(s.group), DASHES[(n - 1) % DASHES.length]));
    });
    spec.vlines.forEach(function (m, k) {
      if (!x.ok(m.x) || m.x < xe[0] || m.x > xe[1]) return;
      var p = x.map(m.x).toFixed(1);
      out.push('<line class="vmark" stroke="' + color(m.group || 0) + '" x1="' + p + '" x2="' + p +
               '" y1="' + M.t + '" y2="' + (HEIGHT - M.b) + '"><title>' + esc(m.label || "") + " " +
               fmt(m.x) + "</title></line>");
      if (m.label) out.push('<text class="mark" x="' + (Number(p) + 3) + '" y="' + (M.t + 10 + 11 * (k % 3)) +
                            '" fill="' + color(m.group || 0) + '">' + esc(m.label) + "</text>");
    });
    out.push('<circle class="hover" r="4" cx="-10" cy="-10"/>');
    out.push('<rect class="overlay" x="' + M.l + '" y="' + M.t + '" width="' + (width - M.l - M.r) +
             '" height="' + (HEIGHT - M.t - M.b) + '"/>');
    out.push("</svg>");
    this.svgBox.innerHTML = out.join("");
    this.drawLegend();
    this.bindHover();
  };

  Plot.prototype.seriesMarkup = function (s, c, dash) {
    var x = this.x, y = this.y, i;
    if (s.kind === "points") {
      var dots = [], r = s.x.length < 100 ? 4 : 2.2;
      for (i = 0; i < s.x.length; i++) {
        if (!x.ok(s.x[i]) || !y.ok(s.y[i])) continue;
        dots.push('<circle cx="' + x.map(s.x[i]).toFixed(1) + '" cy="' + y.map(s.y[i]).toFixed(1) + '" r="' + r + '"/>');
      }
      return '<g class="points" fill="' + c + '">' + dots.join("") + "</g>";
    }
    var d = [], pen = false, prevY = null;
    for (i = 0; i < s.x.length; i++) {
      if (!x.ok(s.x[i]) || !y.ok(s.y[i])) { pen = false; continue; }
      var px = x.map(s.x[i]).toFixed(1), py = y.map(s.y[i]).toFixed(1);
      if (!pen) d.push("M" + px + " " + py);
      else if (s.kind === "step") d.push("L" + px + " " + prevY + "L" + px + " " + py);
      else d.push("L" + px + " " + py);
      pen = true; prevY = py;
    }
    return '<path class="series" fill="none" stroke="' + c + '"' +
           (dash ? ' stroke-dasharray="' + dash + '"' : "") + ' d="' + d.join("") + '"/>';
  };

  Plot.prototype.drawLegend = function () {
    var self = this, seen = {};
    this.legend.innerHTML = this.spec.series.map(function (s, i) {
      var n = seen[s.group] = (seen[s.group] || 0) + 1;
      var dash = DASHES[(n - 1) % DASHES.length];
      var swatch = '<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="' +
        color(s.group) + '" stroke-width="' + (s.kind === "points" ? 6 : 2) + '"' +
        (dash && s.kind !== "points" ? ' stroke-dasharray="' + dash + '"' : "") + "/></svg>";
      return '<span class="entry' + (self.hidden[i] ? " off" : "") + '" data-i="' + i + '">' +
             swatch + esc(s.name) + "</span>";
    }).join("");
    Array.prototype.forEach.call(this.legend.querySelectorAll(".entry"), function (el) {
      el.addEventListener("click", function () {
        var i = Number(el.getAttribute("data-i"));
        self.hidden[i] = !self.hidden[i];
        self.draw();
      });
    });
  };

  /* the point nearest to the pointer (in pixels) among the visible series */
  Plot.prototype.nearest = function (px, py) {
    var best = null, bestD = Infinity, x = this.x, y = this.y, self = this;
    this.spec.series.forEach(function (s, i) {
      if (self.hidden[i]) return;
      for (var j = 0; j < s.x.length; j++) {
        if (!x.ok(s.x[j]) || !y.ok(s.y[j])) continue;
        var dx = x.map(s.x[j]) - px, dy = y.map(s.y[j]) - py, d = dx * dx + dy * dy;
        if (d < bestD) { bestD = d; best = {s: s, j: j}; }
      }
    });
    return best;
  };

  Plot.prototype.bindHover = function () {
    var self = this, svg = this.svgBox.querySelector("svg");
    var overlay = svg.querySelector(".overlay"), dot = svg.querySelector(".hover");
    overlay.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var hit = self.nearest(ev.clientX - box.left, ev.clientY - box.top);
      if (!hit) return;
      var cx = self.x.map(hit.s.x[hit.j]), cy = self.y.map(hit.s.y[hit.j]);
      dot.setAttribute("cx", cx); dot.setAttribute("cy", cy);
      dot.setAttribute("fill", color(hit.s.group));
      self.tip.style.display = "block";
      self.tip.style.left = Math.min(cx + 12, self.width - 200) + "px";
      self.tip.style.top = Math.max(cy - 30, 0) + "px";
      self.tip.innerHTML = "<b>" + esc(hit.s.name) + "</b><br>" + esc(self.spec.xlabel) + ": " +
        fmt(hit.s.x[hit.j]) + "<br>" + esc(self.spec.ylabel) + ": " + fmt(hit.s.y[hit.j]);
    });
    overlay.addEventListener("mouseleave", function () {
      self.tip.style.display = "none";
      dot.setAttribute("cx", -10);
    });
  };

  var data = JSON.parse(document.getElementById("etalon-data").textContent);
  var drawn = 0;
  data.charts.forEach(function (spec) {
    var root = document.getElementById("chart-" + spec.id);
    if (!root) return;
    new Plot(root, spec).draw();
    drawn++;
  });
  document.body.setAttribute("data-charts-rendered", String(drawn));
})();
