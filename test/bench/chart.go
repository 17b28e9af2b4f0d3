package main

// The harness draws its charts itself, with the standard library only: lines, marks, axes with ticks
// and grid lines, a legend, and text in a small built-in 5x7 bitmap font (drawn at twice its size).

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	X, Y   []float64
	Color  color.RGBA
	Dashed bool
	Marks  bool // a dot at every point
}

// Chart is a line chart. The X axis can be logarithmic; the Y axis is linear from 0.
type Chart struct {
	Title          string
	XLabel, YLabel string
	XLog           bool
	Width, Height  int
	Series         []Series
	Legend         Legend
}

// Legend is where a chart's legend goes.
type Legend int

const (
	LegendInside Legend = iota // in the corner of the plot area that the data leaves emptiest
	LegendRight                // to the right of the plot area, one entry a row
	LegendBelow                // under the axis label, the entries side by side
)

var (
	background = color.RGBA{255, 255, 255, 255}
	gridColor  = color.RGBA{228, 228, 228, 255}
	axisColor  = color.RGBA{70, 70, 70, 255}
	textColor  = color.RGBA{25, 25, 25, 255}
	palette    = []color.RGBA{
		{31, 119, 180, 255}, // blue
		{230, 110, 0, 255},  // orange
		{44, 160, 44, 255},  // green
		{214, 39, 40, 255},  // red
		{148, 103, 189, 255},
		{140, 86, 75, 255},
	}
)

const (
	scale        = 2 // font scale
	glyphW       = 5
	glyphH       = 9 // 7 rows above the baseline and 2 for descenders
	advance      = (glyphW + 1) * scale
	lineHeight   = (glyphH + 2) * scale
	marginLeft   = 110
	marginRight  = 40
	marginTop    = 56
	marginBottom = 76
)

const legendSample, legendPad, legendRow = 36, 10, 24

// PlotArea is the rectangle inside the axes.
func (c Chart) PlotArea() image.Rectangle {
	right, bottom := c.Width-marginRight, c.Height-marginBottom
	switch c.Legend {
	case LegendRight:
		w, _ := c.legendSize()
		right = c.Width - 12 - w - 16
	case LegendBelow:
		bottom -= legendRow + 10
	}
	return image.Rect(marginLeft, marginTop, right, bottom)
}

// legendSize is the size of the legend's box.
func (c Chart) legendSize() (w, h int) {
	n := 0
	for _, s := range c.Series {
		if s.Name != "" {
			n++
			w = max(w, textWidth(s.Name))
		}
	}
	if n == 0 {
		return 0, 0
	}
	return legendPad + legendSample + 8 + w + legendPad, legendPad + n*legendRow + legendPad - 6
}

// WritePNG renders the chart into path.
func (c Chart) WritePNG(path string) error {
	var b bytes.Buffer
	if err := png.Encode(&b, c.Render()); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

type axis struct {
	min, max float64
	log      bool
	lo, hi   float64 // pixels for min and max
	ticks    []float64
	minor    []float64
}

func (a axis) pos(v float64) float64 {
	min, max := a.min, a.max
	if a.log {
		v, min, max = math.Log10(math.Max(v, a.min)), math.Log10(min), math.Log10(max)
	}
	return a.lo + (v-min)/(max-min)*(a.hi-a.lo)
}

// linearAxis runs from 0 (or the data's minimum, if negative) to a round number above max.
func linearAxis(lo, hi float64) axis {
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - math.Min(lo, 0)) / 5)
	a := axis{min: math.Floor(math.Min(lo, 0)/step) * step, max: math.Ceil(hi/step) * step}
	for i := 0; ; i++ {
		v := a.min + float64(i)*step
		if v > a.max+step/2 {
			break
		}
		a.ticks = append(a.ticks, v)
	}
	return a
}

// logAxis runs from the decade below lo to the decade above hi.
func logAxis(lo, hi float64) axis {
	e0, e1 := int(math.Floor(math.Log10(math.Max(lo, 1e-9)))), int(math.Ceil(math.Log10(math.Max(hi, 1e-9))))
	if e1 <= e0 {
		e1 = e0 + 1
	}
	a := axis{log: true, min: math.Pow10(e0), max: math.Pow10(e1)}
	for e := e0; e <= e1; e++ {
		d := math.Pow10(e)
		a.ticks = append(a.ticks, d)
		for m := 2.0; m < 10 && e < e1; m++ {
			a.minor = append(a.minor, d*m)
		}
	}
	return a
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// tickLabel prints v with as few decimals as the ticks need.
func tickLabel(v float64, ticks []float64, log bool) string {
	decimals := 0
	if log {
		switch {
		case v >= 1e6:
			return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
		case v >= 1e4:
			return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
		case v < 1:
			decimals = int(math.Ceil(-math.Log10(v) - 1e-9))
		}
	} else if len(ticks) > 1 {
		step := ticks[1] - ticks[0]
		for step*math.Pow(10, float64(decimals)) < 0.999 && decimals < 6 {
			decimals++
		}
		if math.Abs(step*math.Pow(10, float64(decimals))-math.Round(step*math.Pow(10, float64(decimals)))) > 1e-6 {
			decimals++
		}
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// Render draws the chart.
func (c Chart) Render() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, c.Width, c.Height))
	draw.Draw(img, img.Bounds(), &image.Uniform{background}, image.Point{}, draw.Src)
	plot := c.PlotArea()

	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range c.Series {
		for i := range s.X {
			if c.XLog && s.X[i] <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymax = math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax = 1, 10
	}
	var xa axis
	if c.XLog {
		xa = logAxis(xmin, xmax)
	} else {
		xa = linearAxis(math.Min(xmin, 0), xmax)
	}
	ya := linearAxis(0, ymax)
	xa.lo, xa.hi = float64(plot.Min.X), float64(plot.Max.X-1)
	ya.lo, ya.hi = float64(plot.Max.Y-1), float64(plot.Min.Y)

	// Grid, ticks and tick labels.
	for _, v := range xa.minor {
		x := int(math.Round(xa.pos(v)))
		vline(img, x, plot.Min.Y, plot.Max.Y, color.RGBA{242, 242, 242, 255})
	}
	for _, v := range xa.ticks {
		x := int(math.Round(xa.pos(v)))
		vline(img, x, plot.Min.Y, plot.Max.Y, gridColor)
		vline(img, x, plot.Max.Y, plot.Max.Y+6, axisColor)
		l := tickLabel(v, xa.ticks, xa.log)
		drawText(img, x-textWidth(l)/2, plot.Max.Y+12, l, textColor)
	}
	for _, v := range ya.ticks {
		y := int(math.Round(ya.pos(v)))
		hline(img, plot.Min.X, plot.Max.X, y, gridColor)
		hline(img, plot.Min.X-6, plot.Min.X, y, axisColor)
		l := tickLabel(v, ya.ticks, false)
		drawText(img, plot.Min.X-12-textWidth(l), y-7*scale/2, l, textColor)
	}
	// Axes.
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y-1, axisColor)
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, axisColor)

	// Series, clipped to the plot area.
	clip := image.Rect(plot.Min.X+1, plot.Min.Y, plot.Max.X, plot.Max.Y-1)
	for _, s := range c.Series {
		var pts [][2]float64
		for i := range s.X {
			if c.XLog && s.X[i] <= 0 {
				continue
			}
			pts = append(pts, [2]float64{xa.pos(s.X[i]), ya.pos(s.Y[i])})
		}
		polyline(img, clip, pts, s.Color, s.Dashed)
		if s.Marks {
			for _, p := range pts {
				dot(img, clip, p[0], p[1], 4.5, s.Color)
			}
		}
	}

	// Labels.
	drawText(img, (c.Width-textWidth(c.Title))/2, 16, c.Title, textColor)
	drawText(img, plot.Min.X+(plot.Dx()-textWidth(c.XLabel))/2, plot.Max.Y+46, c.XLabel, textColor)
	drawTextUp(img, 14, plot.Min.Y+(plot.Dy()+textWidth(c.YLabel))/2, c.YLabel, textColor)

	c.legend(img, plot)
	return img
}

// legend goes into the corner of the plot area that the data leaves emptiest.
func (c Chart) legend(img *image.RGBA, plot image.Rectangle) {
	var named []Series
	for _, s := range c.Series {
		if s.Name != "" {
			named = append(named, s)
		}
	}
	if len(named) == 0 {
		return
	}
	const sample, pad, rowH = legendSample, legendPad, legendRow
	if c.Legend == LegendBelow {
		w := 0
		for _, s := range named {
			w += sample + 8 + textWidth(s.Name) + 28
		}
		x, y := (c.Width-(w-28))/2, float64(c.Height-22)
		for _, s := range named {
			polyline(img, img.Bounds(), [][2]float64{{float64(x), y}, {float64(x + sample), y}}, s.Color, s.Dashed)
			drawText(img, x+sample+8, int(y)-7*scale/2, s.Name, textColor)
			x += sample + 8 + textWidth(s.Name) + 28
		}
		return
	}
	bw, bh := c.legendSize()
	corners := []image.Point{
		{plot.Min.X + 12, plot.Min.Y + 10}, // top left
		{plot.Max.X - 10 - bw, plot.Min.Y + 10},
		{plot.Max.X - 10 - bw, plot.Max.Y - 12 - bh},
		{plot.Min.X + 12, plot.Max.Y - 12 - bh},
	}
	if c.Legend == LegendRight {
		corners = []image.Point{{plot.Max.X + 16, plot.Min.Y}}
	}
	best, bestInk := corners[0], math.MaxInt
	for _, p := range corners {
		ink := 0
		for y := p.Y; y < p.Y+bh; y++ {
			for x := p.X; x < p.X+bw; x++ {
				col := img.RGBAAt(x, y)
				if col.R != col.G || col.G != col.B { // a series' colour, not grey grid or white
					ink++
				}
			}
		}
		if ink < bestInk {
			best, bestInk = p, ink
		}
	}
	box := image.Rect(best.X, best.Y, best.X+bw, best.Y+bh)
	draw.Draw(img, box, &image.Uniform{background}, image.Point{}, draw.Src)
	hline(img, box.Min.X, box.Max.X, box.Min.Y, gridColor)
	hline(img, box.Min.X, box.Max.X, box.Max.Y-1, gridColor)
	vline(img, box.Min.X, box.Min.Y, box.Max.Y, gridColor)
	vline(img, box.Max.X-1, box.Min.Y, box.Max.Y, gridColor)
	for i, s := range named {
		y := float64(box.Min.Y + pad + i*rowH + 7)
		x0 := float64(box.Min.X + pad)
		polyline(img, box, [][2]float64{{x0, y}, {x0 + sample, y}}, s.Color, s.Dashed)
		if s.Marks {
			dot(img, box, x0+sample/2, y, 4.5, s.Color)
		}
		drawText(img, int(x0)+sample+8, int(y)-7*scale/2, s.Name, textColor)
	}
}

func hline(img *image.RGBA, x0, x1, y int, col color.RGBA) {
	for x := x0; x < x1; x++ {
		img.SetRGBA(x, y, col)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		img.SetRGBA(x, y, col)
	}
}

// polyline draws a line 2.5 px wide through pts, dashed if asked.
func polyline(img *image.RGBA, clip image.Rectangle, pts [][2]float64, col color.RGBA, dashed bool) {
	walked := 0.0
	for i := 1; i < len(pts); i++ {
		x0, y0, x1, y1 := pts[i-1][0], pts[i-1][1], pts[i][0], pts[i][1]
		l := math.Hypot(x1-x0, y1-y0)
		steps := int(math.Ceil(l / 0.5))
		for k := 0; k <= steps; k++ {
			t := 0.0
			if steps > 0 {
				t = float64(k) / float64(steps)
			}
			if dashed && math.Mod(walked+t*l, 14) >= 8 {
				continue
			}
			dot(img, clip, x0+t*(x1-x0), y0+t*(y1-y0), 1.25, col)
		}
		walked += l
	}
}

func dot(img *image.RGBA, clip image.Rectangle, cx, cy, r float64, col color.RGBA) {
	for y := int(math.Floor(cy - r)); y <= int(math.Ceil(cy+r)); y++ {
		for x := int(math.Floor(cx - r)); x <= int(math.Ceil(cx+r)); x++ {
			if (float64(x)-cx)*(float64(x)-cx)+(float64(y)-cy)*(float64(y)-cy) <= r*r && (image.Point{x, y}).In(clip) {
				img.SetRGBA(x, y, col)
			}
		}
	}
}

// CDF returns the steps of the empirical distribution of values: y is the fraction at or below x.
func CDF(name string, values []float64, col color.RGBA) Series {
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	s := Series{Name: name, Color: col}
	for i, x := range v {
		s.X = append(s.X, x, x)
		s.Y = append(s.Y, float64(i)/float64(len(v)), float64(i+1)/float64(len(v)))
	}
	return s
}

// Cumulative returns the count of events at or before each time in times, starting at (0, 0).
func Cumulative(name string, times []float64, col color.RGBA, dashed bool) Series {
	v := append([]float64(nil), times...)
	sort.Float64s(v)
	s := Series{Name: name, Color: col, Dashed: dashed, X: []float64{0}, Y: []float64{0}}
	for i, x := range v {
		s.X = append(s.X, x, x)
		s.Y = append(s.Y, float64(i), float64(i+1))
	}
	return s
}

func textWidth(s string) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return n*advance - scale
}

// drawText draws s with its top-left corner (cap height) at x, y.
func drawText(img *image.RGBA, x, y int, s string, col color.RGBA) {
	for _, r := range s {
		g := glyph(r)
		for row := 0; row < glyphH; row++ {
			for bit := 0; bit < glyphW; bit++ {
				if g[row]&(1<<(glyphW-1-bit)) != 0 {
					fill(img, x+bit*scale, y+row*scale, col)
				}
			}
		}
		x += advance
	}
}

// drawTextUp draws s rotated a quarter turn anticlockwise, reading upwards from x, y (its bottom-left).
func drawTextUp(img *image.RGBA, x, y int, s string, col color.RGBA) {
	for _, r := range s {
		g := glyph(r)
		for row := 0; row < glyphH; row++ {
			for bit := 0; bit < glyphW; bit++ {
				if g[row]&(1<<(glyphW-1-bit)) != 0 {
					fill(img, x+row*scale, y-(bit+1)*scale, col)
				}
			}
		}
		y -= advance
	}
}

func fill(img *image.RGBA, x, y int, col color.RGBA) {
	for dy := 0; dy < scale; dy++ {
		for dx := 0; dx < scale; dx++ {
			img.SetRGBA(x+dx, y+dy, col)
		}
	}
}

var glyphs = parseFont(font)

// glyph returns the rows of r, 5 bits each, or an open box for a character the font lacks.
func glyph(r rune) [glyphH]uint8 {
	if g, ok := glyphs[r]; ok {
		return g
	}
	return [glyphH]uint8{0x1f, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1f}
}

func parseFont(src string) map[rune][glyphH]uint8 {
	out := map[rune][glyphH]uint8{' ': {}}
	for _, line := range strings.Split(src, "\n") {
		if line == "" {
			continue
		}
		r := []rune(line)[0]
		var g [glyphH]uint8
		for i, f := range strings.Fields(string([]rune(line)[1:])) {
			v, err := strconv.ParseUint(f, 2, 8)
			if err != nil || i >= glyphH {
				panic("bad glyph " + line)
			}
			g[i] = uint8(v)
		}
		out[r] = g
	}
	return out
}

// font: a character, then its rows from the top, 5 pixels each; rows 8 and 9 are descenders.
const font = `
A 01110 10001 10001 11111 10001 10001 10001
B 11110 10001 10001 11110 10001 10001 11110
C 01110 10001 10000 10000 10000 10001 01110
D 11110 10001 10001 10001 10001 10001 11110
E 11111 10000 10000 11110 10000 10000 11111
F 11111 10000 10000 11110 10000 10000 10000
G 01110 10001 10000 10111 10001 10001 01111
H 10001 10001 10001 11111 10001 10001 10001
I 01110 00100 00100 00100 00100 00100 01110
J 00111 00010 00010 00010 00010 10010 01100
K 10001 10010 10100 11000 10100 10010 10001
L 10000 10000 10000 10000 10000 10000 11111
M 10001 11011 10101 10101 10001 10001 10001
N 10001 10001 11001 10101 10011 10001 10001
O 01110 10001 10001 10001 10001 10001 01110
P 11110 10001 10001 11110 10000 10000 10000
Q 01110 10001 10001 10001 10101 10010 01101
R 11110 10001 10001 11110 10100 10010 10001
S 01111 10000 10000 01110 00001 00001 11110
T 11111 00100 00100 00100 00100 00100 00100
U 10001 10001 10001 10001 10001 10001 01110
V 10001 10001 10001 10001 10001 01010 00100
W 10001 10001 10001 10101 10101 10101 01010
X 10001 10001 01010 00100 01010 10001 10001
Y 10001 10001 01010 00100 00100 00100 00100
Z 11111 00001 00010 00100 01000 10000 11111
a 00000 00000 01110 00001 01111 10001 01111
b 10000 10000 10110 11001 10001 10001 11110
c 00000 00000 01110 10000 10000 10001 01110
d 00001 00001 01101 10011 10001 10001 01111
e 00000 00000 01110 10001 11111 10000 01110
f 00110 01001 01000 11100 01000 01000 01000
g 00000 00000 01111 10001 10001 10001 01111 00001 01110
h 10000 10000 10110 11001 10001 10001 10001
i 00100 00000 01100 00100 00100 00100 01110
j 00010 00000 00110 00010 00010 00010 00010 10010 01100
k 10000 10000 10010 10100 11000 10100 10010
l 01100 00100 00100 00100 00100 00100 01110
m 00000 00000 11010 10101 10101 10001 10001
n 00000 00000 10110 11001 10001 10001 10001
o 00000 00000 01110 10001 10001 10001 01110
p 00000 00000 11110 10001 10001 10001 11110 10000 10000
q 00000 00000 01111 10001 10001 10001 01111 00001 00001
r 00000 00000 10110 11001 10000 10000 10000
s 00000 00000 01111 10000 01110 00001 11110
t 01000 01000 11100 01000 01000 01001 00110
u 00000 00000 10001 10001 10001 10011 01101
v 00000 00000 10001 10001 10001 01010 00100
w 00000 00000 10001 10001 10101 10101 01010
x 00000 00000 10001 01010 00100 01010 10001
y 00000 00000 10001 10001 10001 10001 01111 00001 01110
z 00000 00000 11111 00010 00100 01000 11111
0 01110 10001 10011 10101 11001 10001 01110
1 00100 01100 00100 00100 00100 00100 01110
2 01110 10001 00001 00010 00100 01000 11111
3 11111 00010 00100 00010 00001 10001 01110
4 00010 00110 01010 10010 11111 00010 00010
5 11111 10000 11110 00001 00001 10001 01110
6 00110 01000 10000 11110 10001 10001 01110
7 11111 00001 00010 00100 01000 01000 01000
8 01110 10001 10001 01110 10001 10001 01110
9 01110 10001 10001 01111 00001 00010 01100
. 00000 00000 00000 00000 00000 01100 01100
, 00000 00000 00000 00000 00000 01100 00100 01000
: 00000 01100 01100 00000 01100 01100 00000
; 00000 01100 01100 00000 01100 00100 01000
- 00000 00000 00000 01110 00000 00000 00000
+ 00000 00100 00100 11111 00100 00100 00000
= 00000 00000 11111 00000 11111 00000 00000
_ 00000 00000 00000 00000 00000 00000 11111
/ 00000 00001 00010 00100 01000 10000 00000
\ 00000 10000 01000 00100 00010 00001 00000
( 00010 00100 01000 01000 01000 00100 00010
) 01000 00100 00010 00010 00010 00100 01000
[ 01110 01000 01000 01000 01000 01000 01110
] 01110 00010 00010 00010 00010 00010 01110
{ 00010 00100 00100 01000 00100 00100 00010
} 01000 00100 00100 00010 00100 00100 01000
< 00010 00100 01000 10000 01000 00100 00010
> 01000 00100 00010 00001 00010 00100 01000
% 11000 11001 00010 00100 01000 10011 00011
! 00100 00100 00100 00100 00100 00000 00100
? 01110 10001 00001 00010 00100 00000 00100
' 00100 00100 01000 00000 00000 00000 00000
" 01010 01010 01010 00000 00000 00000 00000
# 01010 01010 11111 01010 11111 01010 01010
$ 00100 01111 10100 01110 00101 11110 00100
& 01100 10010 10100 01000 10101 10010 01101
* 00000 00100 10101 01110 10101 00100 00000
@ 01110 10001 00001 01101 10101 10101 01110
^ 00100 01010 10001 00000 00000 00000 00000
| 00100 00100 00100 00100 00100 00100 00100
~ 00000 00000 01000 10101 00010 00000 00000
` + "`" + ` 01000 00100 00010 00000 00000 00000 00000
µ 00000 00000 10001 10001 10001 10011 11101 10000 10000
≤ 00010 00100 01000 00100 00010 00000 11111
× 00000 10001 01010 00100 01010 10001 00000
`
