package ui

// Line charts of metrics per round, drawn on the server as inline SVG so the
// session page needs no script.

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// chartPoint is one value of a series: X is the round.
type chartPoint struct{ X, Y float64 }

// series is one line of a chart. Points whose Y is NaN or infinite are gaps.
type series struct {
	Name   string
	Points []chartPoint
}

// chart is a line chart of values per round.
type chart struct {
	Title         string // its accessible name
	YLabel        string // what the values are
	Width, Height int    // of the drawing; the page scales it to its box
	Series        []series
	Legend        bool    // list the series under the chart (always when there are several)
	Mark          float64 // a round to mark with a dashed line (the best one); 0 for none
	MarkLabel     string  // names the mark in the legend
}

// maxDots is how many values a series may have and still get a dot each.
const maxDots = 30

// chartColors is how many series colours silo.css defines (.chart-s0…).
const chartColors = 8

// Margins of the plot inside the drawing, for the axes' labels.
const (
	chartLeft, chartRight, chartTop, chartBottom = 64, 16, 14, 44
)

// lineChart draws c as inline SVG: grid, axes with tick labels, the rounds
// along the bottom, one polyline per series (split at missing values) with
// a dot and tooltip per value. It has no inline styles — colours come from
// CSS classes — so the Content-Security-Policy allows it. Labels are
// escaped.
func lineChart(c chart) template.HTML {
	w, h := max(c.Width, chartLeft+chartRight+40), max(c.Height, chartTop+chartBottom+40)
	plotW, plotH := float64(w-chartLeft-chartRight), float64(h-chartTop-chartBottom)
	esc := template.HTMLEscapeString

	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !finite(p.X) || !finite(p.Y) {
				continue
			}
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
			n++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart-svg" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, w, h, esc(c.Title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(c.Title))
	if n == 0 {
		fmt.Fprintf(&b, `<text class="chart-none" x="%d" y="%d" text-anchor="middle">No values to show yet</text></svg>`, w/2, h/2)
		// #nosec G203 -- SVG built here with every label escaped
		return template.HTML(b.String())
	}

	// X: the rounds. One round sits in the middle.
	dataXMin, dataXMax := xmin, xmax
	if xmin == xmax {
		xmin, xmax = xmin-1, xmax+1
	}
	// Y: nice bounds around the values; a constant gets some room.
	if ymin == ymax {
		pad := math.Abs(ymin) * 0.05
		if pad == 0 {
			pad = 0.5
		}
		ymin, ymax = ymin-pad, ymax+pad
	}
	lo, hi, step := niceScale(ymin, ymax, 5)
	px := func(x float64) float64 { return chartLeft + (x-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return chartTop + (hi-y)/(hi-lo)*plotH }
	bottom, right := float64(chartTop)+plotH, float64(chartLeft)+plotW

	// Grid and Y ticks.
	nticks := int(math.Round((hi - lo) / step))
	b.WriteString(`<g class="chart-grid">`)
	for i := 0; i <= nticks; i++ {
		y := py(lo + float64(i)*step)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f"/>`, chartLeft, y, right, y)
	}
	b.WriteString(`</g><g class="chart-tick chart-ytick">`)
	for i := 0; i <= nticks; i++ {
		y := lo + float64(i)*step
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, chartLeft-8, py(y), esc(tickLabel(y, step)))
	}
	// X ticks: the first round, then multiples of a nice step.
	b.WriteString(`</g><g class="chart-tick chart-xtick">`)
	xstep := niceStep((dataXMax - dataXMin) / 8)
	xstep = math.Max(1, math.Round(xstep))
	ticks := []float64{dataXMin}
	for x := math.Ceil(dataXMin/xstep) * xstep; x <= dataXMax+1e-9; x += xstep {
		if x-dataXMin >= xstep/2 {
			ticks = append(ticks, x)
		}
	}
	for _, x := range ticks {
		fmt.Fprintf(&b, `<line class="chart-tickmark" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, px(x), bottom, px(x), bottom+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px(x), bottom+18, esc(strconv.FormatFloat(x, 'f', -1, 64)))
	}
	b.WriteString(`</g>`)
	// Axes and their labels.
	fmt.Fprintf(&b, `<g class="chart-axis"><line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f"/><line x1="%d" y1="%d" x2="%d" y2="%.1f"/></g>`,
		chartLeft, bottom, right, bottom, chartLeft, chartTop, chartLeft, bottom)
	fmt.Fprintf(&b, `<text class="chart-label" x="%.1f" y="%d" text-anchor="middle">Round</text>`, float64(chartLeft)+plotW/2, h-6)
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text class="chart-label" transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, float64(chartTop)+plotH/2, esc(c.YLabel))
	}
	// The marked round.
	marked := c.Mark >= xmin && c.Mark <= xmax && c.Mark > 0
	if marked {
		fmt.Fprintf(&b, `<line class="chart-mark" x1="%.1f" y1="%d" x2="%.1f" y2="%.1f"><title>%s</title></line>`,
			px(c.Mark), chartTop, px(c.Mark), bottom, esc(cmp.Or(c.MarkLabel, "Round "+strconv.FormatFloat(c.Mark, 'f', -1, 64))))
	}
	// The lines: one polyline per run of values, and a dot per value.
	for i, s := range c.Series {
		class := fmt.Sprintf("chart-s%d", i%chartColors)
		var seg []chartPoint
		var segs [][]chartPoint
		for _, p := range s.Points {
			if finite(p.X) && finite(p.Y) {
				seg = append(seg, p)
				continue
			}
			if len(seg) > 0 {
				segs = append(segs, seg)
			}
			seg = nil
		}
		if len(seg) > 0 {
			segs = append(segs, seg)
		}
		fmt.Fprintf(&b, `<g class="chart-series %s">`, class)
		total := 0
		for _, seg := range segs {
			total += len(seg)
			if len(seg) < 2 {
				continue
			}
			b.WriteString(`<polyline class="chart-line" fill="none" points="`)
			for j, p := range seg {
				if j > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%.1f,%.1f", px(p.X), py(p.Y))
			}
			b.WriteString(`"/>`)
		}
		// Dots carry each value as a tooltip; with many rounds only lone
		// values (which have no line) get one.
		for _, seg := range segs {
			if total > maxDots && len(seg) > 1 {
				continue
			}
			for _, p := range seg {
				fmt.Fprintf(&b, `<circle class="chart-dot" cx="%.1f" cy="%.1f" r="3"><title>%s · round %s: %s</title></circle>`,
					px(p.X), py(p.Y), esc(s.Name), strconv.FormatFloat(p.X, 'f', -1, 64), esc(fmtMetric(p.Y, true)))
			}
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	if c.Legend || len(c.Series) > 1 {
		b.WriteString(`<ul class="chart-legend">`)
		for i, s := range c.Series {
			fmt.Fprintf(&b, `<li><span class="chart-swatch chart-s%d" aria-hidden="true"></span>%s</li>`, i%chartColors, esc(s.Name))
		}
		if marked && c.MarkLabel != "" {
			fmt.Fprintf(&b, `<li><span class="chart-swatch chart-swatch-mark" aria-hidden="true"></span>%s</li>`, esc(c.MarkLabel))
		}
		b.WriteString(`</ul>`)
	}
	// #nosec G203 -- as above
	return template.HTML(b.String())
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		return mag
	case f <= 2:
		return 2 * mag
	case f <= 5:
		return 5 * mag
	}
	return 10 * mag
}

// niceScale widens [lo, hi] to multiples of a nice step giving about n
// ticks.
func niceScale(lo, hi float64, n int) (float64, float64, float64) {
	step := niceStep((hi - lo) / float64(n))
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, step
}

// tickLabel writes a tick value with as many decimals as the step needs.
func tickLabel(v, step float64) string {
	if math.Abs(v) < step*1e-9 {
		v = 0
	}
	if math.Abs(v) >= 1e6 || (step < 1e-4 && v != 0) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	dec := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	return strconv.FormatFloat(v, 'f', dec, 64)
}
