package dashboard

import (
	"embed"
	"net/http"
	"path"
)

// assets are the page, its script and its style sheet, compiled into the plugin: the page loads
// nothing from anywhere else and works offline.
//
//go:embed assets/index.html assets/app.js assets/app.css
var assets embed.FS

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// serveAsset writes one embedded file; any other name is not found.
func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	ct, ok := contentTypes[path.Ext(name)]
	if !ok || path.Base(name) != name {
		http.NotFound(w, r)
		return
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(b)
}
