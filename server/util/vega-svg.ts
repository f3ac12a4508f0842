// Charts as SVG documents, rendered by Vega-Lite and Vega in Node (no browser, no canvas): the study plot and the
// model card's loss curve.
import type { TopLevelSpec } from 'vega-lite';

/** Render a Vega-Lite spec to an SVG document. */
export async function renderVegaLiteSvg(spec: TopLevelSpec): Promise<string> {
  // Loaded on first use: Vega is large, and the commands that draw (study, study-report, model-card) draw at the end.
  const [{ parse, View }, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
