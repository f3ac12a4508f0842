// Charts as SVG documents, rendered by Vega-Lite and Vega in Node (no browser, no canvas): the study plot and the
// model card's loss curve.
import { parse, View } from 'vega';
import { compile } from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

/** Render a Vega-Lite spec to an SVG document. */
export async function renderVegaLiteSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
