/* The overview's charts (docs/console.md "Overview"): the funnel and the weekly stage entries,
   drawn by the vendored ECharts (console/static/vendor/echarts) from the page's JSON block
   #overview-data. No inline script (CSP script-src 'self'); the server-rendered tables beside the
   charts carry the same figures for screen readers and when scripts are off. */
(function () {
  "use strict";
  var block = document.getElementById("overview-data");
  if (!block || typeof echarts === "undefined") { return; }
  var data = JSON.parse(block.textContent);
  var palette = ["#0b6e4f", "#2f9e77", "#74c69d", "#f4a261", "#e76f51", "#457b9d", "#8d99ae"];
  var font = "Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif";

  function draw(id, option) {
    var node = document.getElementById(id);
    if (!node) { return; }
    /* SVG: the stage names are text in the page (what the browser tests read), crisp at any
       zoom; aria describes the chart in words for screen readers. */
    var chart = echarts.init(node, null, { renderer: "svg" });
    option.aria = { enabled: true };
    option.color = option.color || palette;
    option.textStyle = { fontFamily: font };
    option.animation = false;
    chart.setOption(option);
    node.setAttribute("data-rendered", "1");
    window.addEventListener("resize", function () { chart.resize(); });
  }

  /* The funnel as horizontal bars in stage order (a trapezoid funnel misdraws stages that
     nobody entered): entered in the period, and in the stage now. */
  var names = data.stages.map(function (s) { return s.name; });
  draw("funnel-chart", {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { top: 0 },
    color: ["#2f9e77", "#0b6e4f"],
    grid: { left: 16, right: 48, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: names, inverse: true, axisTick: { show: false } },
    series: [
      { name: data.text.entered, type: "bar", barGap: "10%",
        label: { show: true, position: "right" },
        data: data.stages.map(function (s) { return s.entered; }) },
      { name: data.text.now, type: "bar",
        label: { show: true, position: "right" },
        data: data.stages.map(function (s) { return s.now; }) }
    ]
  });

  draw("movement-chart", {
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 40, right: 16, top: 40, bottom: 30 },
    xAxis: { type: "category", data: data.weeks, name: data.text.week_of, nameLocation: "start" },
    yAxis: { type: "value", minInterval: 1 },
    series: data.movement.map(function (s) {
      return { name: s.name, type: "bar", stack: "entries", data: s.data };
    })
  });
})();
