// The study plot: for each setting, the fraction of runs (targets × seeds) that hit within k iterations, as a step
// line over k, rendered to SVG by Vega-Lite and Vega in Node (no browser, no canvas).
import type { TopLevelSpec } from 'vega-lite';
import { renderVegaLiteSvg } from '../../server/util/vega-svg.js';

/** One setting's curve. */
export interface HitCurveSeries {
  setting: string;
  points: readonly { k: number; fraction: number }[];
}

/** Options of the plot. */
export interface HitPlotOptions {
  title: string;
  subtitle?: string;
  /** Plot area, in px. */
  width: number;
  height: number;
  /** A log x axis, for runs whose hits spread over orders of magnitude. */
  logIterations: boolean;
}

export const hitPlotDefaults: Readonly<Omit<HitPlotOptions, 'title'>> = Object.freeze({
  width: 560, // px
  height: 320, // px
  logIterations: false,
});

/** Render the curves to an SVG document. */
export async function renderHitPlot(series: readonly HitCurveSeries[], options: Partial<HitPlotOptions> & { title: string }): Promise<string> {
  const o = { ...hitPlotDefaults, ...options };
  // A log axis has no 0: the curve starts at k = 1, where nothing has hit yet unless the start point already did.
  const values = series.flatMap((s) => s.points.map((p) => ({ setting: s.setting, k: o.logIterations ? Math.max(1, p.k) : p.k, fraction: p.fraction })));
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: o.title, ...(o.subtitle ? { subtitle: o.subtitle } : {}), anchor: 'start' },
    width: o.width,
    height: o.height,
    background: 'white',
    padding: 12,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after', strokeWidth: 2.5 },
    encoding: {
      x: {
        field: 'k', type: 'quantitative', title: 'iterations k',
        scale: o.logIterations ? { type: 'log' } : { zero: true },
      },
      y: {
        field: 'fraction', type: 'quantitative', title: 'fraction of runs hit within k iterations',
        scale: { domain: [0, 1] }, axis: { format: '%' },
      },
      color: { field: 'setting', type: 'nominal', title: 'setting', sort: series.map((s) => s.setting), scale: { scheme: 'dark2' }, legend: { orient: 'bottom', columns: 2, labelLimit: 400 } },
      strokeDash: { field: 'setting', type: 'nominal', sort: series.map((s) => s.setting) },
    },
    config: { font: 'sans-serif', axis: { grid: true, gridOpacity: 0.4 } },
  };
  return renderVegaLiteSvg(spec);
}
