/**
 * Charts for the benchmark report: Vega-Lite specs compiled and rendered to SVG in Node (no
 * browser, no canvas), so REPORT.md shows them on GitHub as plain images.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One data point of a chart: field name → value. */
export type Datum = Record<string, string | number | null>;

const FONT = 'Helvetica, Arial, sans-serif';
const BASE_CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: '#ddd' },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' as const },
};

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const { spec: vegaSpec } = compile({ ...spec, config: { ...BASE_CONFIG, ...spec.config } } as TopLevelSpec);
  const view = new vega.View(vega.parse(vegaSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Lines of a median with a min–max band per series: x ordinal (e.g. connections), one panel per
 * `facet` value. Fields: x, median, min, max, series, facet.
 */
export function lineWithRange(title: string, data: Datum[], axes: { x: string; y: string; series: string; facet?: string; logY?: boolean }): TopLevelSpec {
  const y = { field: 'median', type: 'quantitative' as const, title: axes.y, scale: axes.logY ? { type: 'log' as const } : { zero: true } };
  const layer = {
    encoding: { x: { field: 'x', type: 'ordinal' as const, title: axes.x, sort: null }, color: { field: 'series', type: 'nominal' as const, title: axes.series } },
    layer: [
      { mark: { type: 'line' as const, point: true }, encoding: { y } },
      { mark: { type: 'rule' as const, strokeWidth: 2, opacity: 0.5 }, encoding: { y: { field: 'min', type: 'quantitative' as const }, y2: { field: 'max' } } },
    ],
  };
  if (axes.facet) {
    return { title, data: { values: data }, facet: { column: { field: 'facet', type: 'ordinal', title: null, sort: { field: 'order', op: 'min' } } }, spec: { width: 220, height: 200, ...layer }, resolve: { scale: { y: 'independent' } } } as TopLevelSpec;
  }
  return { title, data: { values: data }, width: 360, height: 220, ...layer } as TopLevelSpec;
}

/**
 * Grouped bars with min–max whiskers: `group` along x, `series` as colour, optional facets
 * (sorted by the numeric field `order`). On a log scale, dots instead of bars (a bar has no
 * base on a log axis). Fields: group, series, median, min, max, facet, row, order.
 */
export function groupedBars(title: string, data: Datum[], axes: { group: string; y: string; series: string; facet?: boolean; row?: boolean; logY?: boolean }): TopLevelSpec {
  const y = { field: 'median', type: 'quantitative' as const, title: axes.y, scale: axes.logY ? { type: 'log' as const } : { zero: true } };
  const inner = {
    width: { step: 14 },
    height: 160,
    encoding: {
      x: { field: 'group', type: 'nominal' as const, title: axes.group, sort: null },
      xOffset: { field: 'series', type: 'nominal' as const, sort: null },
      color: { field: 'series', type: 'nominal' as const, title: axes.series, sort: null },
    },
    layer: [
      { mark: axes.logY ? { type: 'point' as const, filled: true, size: 50 } : { type: 'bar' as const }, encoding: { y } },
      { mark: { type: 'rule' as const, color: '#333' }, encoding: { y: { field: 'min', type: 'quantitative' as const }, y2: { field: 'max' } } },
    ],
  };
  if (axes.facet || axes.row) {
    const facet: Record<string, unknown> = {};
    const sort = { field: 'order', op: 'min' };
    if (axes.facet) facet.column = { field: 'facet', type: 'ordinal', title: null, sort };
    if (axes.row) facet.row = { field: 'row', type: 'ordinal', title: null, sort };
    return { title, data: { values: data }, facet, spec: inner, resolve: { scale: { y: 'independent' } } } as TopLevelSpec;
  }
  return { title, data: { values: data }, ...inner } as TopLevelSpec;
}

/** One small horizontal bar chart per metric, side by side, each with its own scale. Fields: label + metrics. */
export function metricBars(title: string, data: Datum[], label: string, metrics: string[]): TopLevelSpec {
  return {
    title,
    data: { values: data },
    hconcat: metrics.map((metric, i) => ({
      width: 150,
      height: { step: 18 },
      mark: { type: 'bar' as const },
      encoding: {
        y: { field: label, type: 'nominal' as const, title: null, sort: null, axis: i === 0 ? { labelLimit: 320 } : null },
        x: { field: metric, type: 'quantitative' as const, title: metric },
        color: { field: label, type: 'nominal' as const, legend: null },
      },
    })),
  } as TopLevelSpec;
}

/** Stacked bars: one bar per `bar`, split into `part`s (e.g. queue, init, run of a start kind). Fields: bar, part, value, order. */
export function stackedBars(title: string, data: Datum[], axes: { bar: string; y: string; part: string }): TopLevelSpec {
  return {
    title,
    data: { values: data },
    width: { step: 90 },
    height: 200,
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'bar', type: 'nominal', title: axes.bar, sort: null, axis: { labelAngle: 0 } },
      y: { field: 'value', type: 'quantitative', title: axes.y, stack: 'zero' },
      color: { field: 'part', type: 'nominal', title: axes.part, sort: null },
      order: { field: 'order', type: 'quantitative' },
    },
  } as TopLevelSpec;
}

/**
 * One horizontal bar per row label and a min–max whisker, one panel per metric (each its own
 * scale; panels sorted by the numeric field `order`). Fields: label, facet, median, min, max, order.
 */
export function rowBars(title: string, data: Datum[]): TopLevelSpec {
  return {
    title,
    data: { values: data },
    facet: { column: { field: 'facet', type: 'ordinal', title: null, sort: { field: 'order', op: 'min' } } },
    spec: {
      width: 170,
      height: { step: 22 },
      encoding: {
        y: { field: 'label', type: 'nominal', title: null, sort: null, axis: { labelLimit: 260 } },
        color: { field: 'label', type: 'nominal', legend: null, sort: null },
      },
      layer: [
        { mark: { type: 'bar' }, encoding: { x: { field: 'median', type: 'quantitative', title: null } } },
        { mark: { type: 'rule', color: '#333' }, encoding: { x: { field: 'min', type: 'quantitative' }, x2: { field: 'max' } } },
      ],
    },
    resolve: { scale: { x: 'independent' } },
  } as TopLevelSpec;
}
