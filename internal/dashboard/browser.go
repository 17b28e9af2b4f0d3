package dashboard

import (
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// BrowserCommand returns the command that opens a file or URL in the user's browser on this system:
// xdg-open on Linux and the BSDs, open on macOS, the URL handler of rundll32 on Windows. Tests replace it.
var BrowserCommand = func(target string) *exec.Cmd {
	switch runtime.GOOS {
	case "darwin":
		return exec.Command("open", target)
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", target)
	default:
		return exec.Command("xdg-open", target)
	}
}

// OpenBrowser opens url in the user's browser without putting it on a command line, where every local
// user could read the token (/proc/PID/cmdline of xdg-open and of the browser): it writes a page that
// forwards to url into a file only the user can read (0600, in a new 0700 directory) and opens that file,
// as Jupyter does. cleanup removes the file; call it when the dashboard stops.
func OpenBrowser(url string) (cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "kubectl-apikey-dashboard-")
	if err != nil {
		return func() {}, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	page := filepath.Join(dir, "open.html")
	u := html.EscapeString(url)
	content := fmt.Sprintf(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url=%s"><title>kubectl apikey dashboard</title></head>
<body><p>Opening the keysmith dashboard: <a href="%s">continue</a>.</p></body></html>
`, u, u)
	if err := os.WriteFile(page, []byte(content), 0o600); err != nil {
		cleanup()
		return func() {}, err
	}
	cmd := BrowserCommand(page)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return cleanup, fmt.Errorf("opening a browser (%s): %w", filepath.Base(cmd.Path), err)
	}
	go func() { _ = cmd.Wait() }()
	return cleanup, nil
}
