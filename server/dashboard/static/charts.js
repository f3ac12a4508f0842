// Line charts over iterations with uPlot, on a log-scaled y axis: the NLL curve and the gradient statistics.
import uPlot from '/vendor/uplot/uPlot.esm.js';

const height = 240; // px

/** A palette that stays readable on white, one colour per series. */
export const palette = ['#2563eb', '#ea580c', '#dc2626', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777'];

export class LogChart {
  /**
   * @param {HTMLElement} el the container; its width is the chart's
   * @param {{label: string, color: string}[]} series the y series
   */
  constructor(el, series) {
    this.el = el;
    this.series = series;
    this.plot = undefined;
  }

  /** Draw x (iterations) against each y array (null where a series has no value). */
  setData(x, ys) {
    const data = [x, ...ys];
    if (!this.plot) {
      this.el.replaceChildren();
      this.plot = new uPlot(this.options(), data, this.el);
    } else {
      this.plot.setData(data);
    }
  }

  resize() {
    this.plot?.setSize({ width: this.width(), height });
  }

  destroy() {
    this.plot?.destroy();
    this.plot = undefined;
    this.el.replaceChildren();
  }

  width() {
    return Math.max(280, this.el.clientWidth);
  }

  options() {
    const axis = { stroke: '#475569', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } };
    return {
      width: this.width(),
      height,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: {
        x: { time: false },
        // Fit the data with a little margin, on round values, rather than snapping to whole decades.
        y: { distr: 3, log: 10, range: (u, min, max) => (min == null ? [1, 10] : [roundDown(min / 1.1), roundUp(max * 1.1)]) },
      },
      axes: [
        { ...axis, label: 'iteration', labelSize: 18, size: 36 },
        { ...axis, size: 64, values: (u, splits) => splits.map((v) => (v == null ? '' : compact(v))) },
      ],
      series: [
        { label: 'iteration', value: (u, v) => (v == null ? '–' : String(v)) },
        ...this.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          points: { show: false },
          spanGaps: true,
          value: (u, v) => (v == null ? '–' : compact(v)),
        })),
      ],
    };
  }
}

const steps = [1, 2, 3, 5, 7]; // round values of a decade, for the ends of a log axis

// The largest round value at or below v (v > 0).
function roundDown(v) {
  const decade = 10 ** Math.floor(Math.log10(v));
  return decade * steps.filter((s) => s * decade <= v * (1 + 1e-9)).at(-1);
}

// The smallest round value at or above v (v > 0).
function roundUp(v) {
  const decade = 10 ** Math.floor(Math.log10(v));
  const step = steps.find((s) => s * decade >= v * (1 - 1e-9));
  return step === undefined ? 10 * decade : step * decade;
}

// Write an axis or legend number compactly: 12.3, 0.0041, 2.5e-7.
function compact(v) {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}
