/**
 * Where the report's scatter chart puts each point's number: next to its point, on the first side where the number
 * covers no point and no number already placed, inside the plot. A number that fits nowhere is left out (the table
 * below the chart lists every row), rather than drawn over another. Plain geometry in the chart's pixels: testable
 * without a renderer.
 *
 * @internal
 */

/** The numbers' font size, in pixels. */
export const LABEL_FONT_SIZE = 10

/**
 * The half side of the square kept clear around each point: the report's points have an area of 90 px² (a circle of
 * radius 5.4, a square of half side 4.7), plus a pixel.
 */
const POINT_CLEARANCE = 6.5

/** From a point's centre to its number's box, along each axis. */
const GAP = POINT_CLEARANCE + 1.5

/**
 * A number's box is estimated, not measured (no fonts in Node): wider and taller than any common sans-serif draws
 * "#" and digits at the font size, so the drawn text stays inside it.
 */
const CHAR_WIDTH = 0.72 * LABEL_FONT_SIZE
const BOX_HEIGHT = 1.25 * LABEL_FONT_SIZE

export interface LabelledPoint {
  /** The point's centre, in the plot's pixels. */
  readonly x: number
  readonly y: number
  readonly text: string
}

export interface PlacedLabel {
  /** The anchor of the text, read with `align` and `baseline` as Vega (and SVG) do. */
  readonly x: number
  readonly y: number
  readonly text: string
  readonly align: "left" | "center" | "right"
  readonly baseline: "top" | "middle" | "bottom"
}

interface Box {
  readonly x1: number
  readonly y1: number
  readonly x2: number
  readonly y2: number
}

/** The sides tried, in order: above right first (where a reader looks), then the others around the point. */
const SIDES: ReadonlyArray<readonly [dx: -1 | 0 | 1, dy: -1 | 0 | 1]> = [
  [1, -1],
  [1, 0],
  [1, 1],
  [0, -1],
  [0, 1],
  [-1, -1],
  [-1, 0],
  [-1, 1]
]

const overlaps = (a: Box, b: Box): boolean => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2

/** The box a label's text occupies (the estimate above), given its anchor. */
export const labelBox = (label: PlacedLabel): Box => {
  const width = label.text.length * CHAR_WIDTH
  const x1 = label.align === "left" ? label.x : label.align === "right" ? label.x - width : label.x - width / 2
  const y1 = label.baseline === "top" ? label.y : label.baseline === "bottom" ? label.y - BOX_HEIGHT : label.y - BOX_HEIGHT / 2
  return { x1, y1, x2: x1 + width, y2: y1 + BOX_HEIGHT }
}

const candidate = (point: LabelledPoint, [dx, dy]: readonly [number, number]): PlacedLabel => ({
  x: point.x + dx * GAP,
  y: point.y + dy * GAP,
  text: point.text,
  align: dx > 0 ? "left" : dx < 0 ? "right" : "center",
  baseline: dy < 0 ? "bottom" : dy > 0 ? "top" : "middle"
})

/**
 * Labels for `points`, taken in the order given (put the ones that matter most first): each on the first side that
 * keeps it inside `width` × `height` and off every point and every label placed before it.
 */
export const placeLabels = (
  points: ReadonlyArray<LabelledPoint>,
  area: { readonly width: number; readonly height: number }
): Array<PlacedLabel> => {
  const pointBoxes = points.map((p): Box => ({
    x1: p.x - POINT_CLEARANCE,
    y1: p.y - POINT_CLEARANCE,
    x2: p.x + POINT_CLEARANCE,
    y2: p.y + POINT_CLEARANCE
  }))
  const taken: Array<Box> = []
  const placed: Array<PlacedLabel> = []
  for (const point of points) {
    for (const side of SIDES) {
      const label = candidate(point, side)
      const box = labelBox(label)
      const inside = box.x1 >= 0 && box.y1 >= 0 && box.x2 <= area.width && box.y2 <= area.height
      if (!inside || pointBoxes.some((other) => overlaps(box, other)) || taken.some((other) => overlaps(box, other))) continue
      taken.push(box)
      placed.push(label)
      break
    }
  }
  return placed
}
