package main

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"strings"
)

// failoverChart draws the outage distributions as a strip plot on a log scale (1 ms to 10 s):
// one row per result, each run a dot, a box from the first to the third quartile, a line at the
// median; Troop in blue, keepalived in orange. Labels use a built-in 3×5 pixel font.
func failoverChart(path string, results []failoverResult) error {
	const (
		left, right, top, rowH, scale = 250, 30, 20, 44, 2
		width                         = 1000
	)
	height := top + rowH*len(results) + 40
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	plotW := width - left - right
	x := func(ms float64) int {
		ms = min(max(ms, 1), 10000)
		return left + int(math.Log10(ms)/4*float64(plotW))
	}
	grid, ink := color.RGBA{220, 220, 220, 255}, color.RGBA{40, 40, 40, 255}
	bottom := top + rowH*len(results)
	for _, t := range []struct {
		ms    float64
		label string
	}{{1, "1MS"}, {10, "10MS"}, {100, "100MS"}, {1000, "1S"}, {10000, "10S"}} {
		fill(img, image.Rect(x(t.ms), top, x(t.ms)+1, bottom), grid)
		text(img, x(t.ms)-len(t.label)*4*scale/2, bottom+10, t.label, ink, scale)
	}
	for i, r := range results {
		y0 := top + i*rowH
		mid := y0 + rowH/2
		c := color.RGBA{31, 119, 180, 255} // troop
		if r.System == "keepalived" {
			c = color.RGBA{230, 120, 20, 255}
		}
		light := color.RGBA{c.R, c.G, c.B, 70}
		label := strings.ToUpper(r.System + " " + r.Kind + " " + strings.Fields(r.Profile + " ?")[0])
		text(img, 8, mid-5, label, ink, scale)
		fill(img, image.Rect(left, y0+rowH-1, width-right, y0+rowH), grid)
		o := slices.Sorted(slices.Values(r.OutageMS))
		if len(o) == 0 {
			continue
		}
		q := func(p float64) float64 { return o[max(0, int(math.Ceil(p*float64(len(o))))-1)] }
		blend(img, image.Rect(x(q(0.25)), mid-12, x(q(0.75))+1, mid+13), light)
		fill(img, image.Rect(x(o[0]), mid, x(o[len(o)-1])+1, mid+1), c)
		fill(img, image.Rect(x(q(0.5))-1, mid-14, x(q(0.5))+2, mid+15), ink)
		for j, v := range r.OutageMS {
			dy := (j*7)%17 - 8 // a fixed jitter, so that equal values stay visible
			fill(img, image.Rect(x(v)-2, mid+dy-2, x(v)+3, mid+dy+3), c)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// blend paints c over r with c's alpha (straight, not premultiplied).
func blend(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	a := float64(c.A) / 255
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			o := img.RGBAAt(x, y)
			mix := func(dst, src uint8) uint8 { return uint8(float64(dst)*(1-a) + float64(src)*a) }
			img.SetRGBA(x, y, color.RGBA{mix(o.R, c.R), mix(o.G, c.G), mix(o.B, c.B), 255})
		}
	}
}

// text draws s (upper case, digits, ". / - ( )") in the 3×5 font, each pixel scale×scale.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	for _, ch := range s {
		g, ok := glyphs[ch]
		if ok {
			for row, line := range strings.Split(g, ",") {
				for col, px := range line {
					if px == '#' {
						fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
					}
				}
			}
		}
		x += 4 * scale
	}
}

var glyphs = map[rune]string{
	'A': ".#.,#.#,###,#.#,#.#", 'B': "##.,#.#,##.,#.#,##.", 'C': ".##,#..,#..,#..,.##",
	'D': "##.,#.#,#.#,#.#,##.", 'E': "###,#..,##.,#..,###", 'F': "###,#..,##.,#..,#..",
	'G': ".##,#..,#.#,#.#,.##", 'H': "#.#,#.#,###,#.#,#.#", 'I': "###,.#.,.#.,.#.,###",
	'J': "..#,..#,..#,#.#,.#.", 'K': "#.#,#.#,##.,#.#,#.#", 'L': "#..,#..,#..,#..,###",
	'M': "#.#,###,###,#.#,#.#", 'N': "##.,#.#,#.#,#.#,#.#", 'O': ".#.,#.#,#.#,#.#,.#.",
	'P': "##.,#.#,##.,#..,#..", 'Q': ".#.,#.#,#.#,##.,.##", 'R': "##.,#.#,##.,#.#,#.#",
	'S': ".##,#..,.#.,..#,##.", 'T': "###,.#.,.#.,.#.,.#.", 'U': "#.#,#.#,#.#,#.#,###",
	'V': "#.#,#.#,#.#,#.#,.#.", 'W': "#.#,#.#,###,###,#.#", 'X': "#.#,#.#,.#.,#.#,#.#",
	'Y': "#.#,#.#,.#.,.#.,.#.", 'Z': "###,..#,.#.,#..,###",
	'0': "###,#.#,#.#,#.#,###", '1': ".#.,##.,.#.,.#.,###", '2': "##.,..#,.#.,#..,###",
	'3': "##.,..#,.#.,..#,##.", '4': "#.#,#.#,###,..#,..#", '5': "###,#..,##.,..#,##.",
	'6': ".##,#..,###,#.#,###", '7': "###,..#,.#.,.#.,.#.", '8': "###,#.#,###,#.#,###",
	'9': "###,#.#,###,..#,##.", '.': "...,...,...,...,.#.", '/': "..#,..#,.#.,#..,#..",
	'-': "...,...,###,...,...", '(': ".#.,#..,#..,#..,.#.", ')': ".#.,..#,..#,..#,.#.",
}
