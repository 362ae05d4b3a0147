package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newDashboardCmd(g *globals) *cobra.Command {
	var open, logoutAll bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print (or open) a one-time link that signs this machine's browser in to the dashboard",
		Long: `The daemon serves a web dashboard on its API address: node, GPUs, market,
jobs with live logs, job submission, wallet and earnings, and the testnet's
nodes.

The link signs one browser in, once, within 2 minutes; the browser then
holds a session of its own (never the API token), which ends after 12 hours
unused, 7 days at most, when the daemon restarts, or with --logout-all.

--open starts the browser ($BROWSER, else xdg-open or open) on a file only
you can read that leads to the link, so nothing secret shows in the
browser's command line, and waits until the link is used.`,
		Example: `  aixblock dashboard --open
  aixblock dashboard --logout-all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if logoutAll {
				res, err := c.LogoutAll(ctx)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
					fmt.Fprintf(w, "signed out %d dashboard session%s; every login link made before now is dead\n", res.SignedOut, plural(res.SignedOut))
				})
			}
			login, err := c.DashboardLogin(ctx)
			if err != nil {
				return err
			}
			if !open {
				return g.print(cmd.OutOrStdout(), map[string]any{"url": login.URL, "expires_at": login.ExpiresAt}, func(w io.Writer) {
					fmt.Fprintln(w, login.URL)
				})
			}
			signedIn, err := openLogin(ctx, c, login, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"opened": true, "signed_in": signedIn}, func(w io.Writer) {
				if signedIn {
					fmt.Fprintln(w, "the browser signed in to the dashboard")
				} else {
					fmt.Fprintln(w, "the login link died unused (2 minutes); run `aixblock dashboard --open` again, or `aixblock dashboard` and open the link it prints")
				}
			})
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open the dashboard in the browser and wait until it has signed in")
	cmd.Flags().BoolVar(&logoutAll, "logout-all", false, "sign out every dashboard session and kill every login link; prints how many sessions ended")
	cmd.MarkFlagsMutuallyExclusive("open", "logout-all")
	return cmd
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// openLogin points the browser at a 0600 file that leads to the login link
// (the browser's argv is public to every local user; the file is not), waits
// until the link is used or has died, and removes the file.
func openLogin(ctx context.Context, c *api.Client, login api.DashboardLogin, stderr io.Writer) (bool, error) {
	dir, err := os.MkdirTemp("", "aixblock-login-") // 0700
	if err != nil {
		return false, fmt.Errorf("login file: %w", err)
	}
	defer os.RemoveAll(dir)
	page := filepath.Join(dir, "login.html")
	u := html.EscapeString(login.URL)
	body := `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url=` + u + `"><title>AIxBlock: signing in</title>
<p>Signing in to the AIxBlock dashboard… <a href="` + u + `">continue</a></p></html>
`
	if err := os.WriteFile(page, []byte(body), 0o600); err != nil {
		return false, fmt.Errorf("login file: %w", err)
	}
	if err := startBrowser("file://" + page); err != nil {
		return false, err
	}
	fmt.Fprintln(stderr, "waiting for the browser to sign in (the link dies in 2 minutes; Ctrl-C to stop)")
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.LoginCode(ctx, login.CodeID)
		if err != nil {
			return false, err
		}
		if st.Used || st.Expired {
			return st.Used, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
	}
}

// startBrowser runs $BROWSER (as Python's webbrowser reads it: commands
// separated by ':', %s for the URL) or else xdg-open or open.
func startBrowser(target string) error {
	var cmds [][]string
	for _, b := range strings.Split(os.Getenv("BROWSER"), string(os.PathListSeparator)) {
		if f := strings.Fields(b); len(f) > 0 {
			cmds = append(cmds, f)
		}
	}
	cmds = append(cmds, []string{"xdg-open"}, []string{"open"})
	var tried []string
	for _, f := range cmds {
		args, subst := []string{}, false
		for _, a := range f[1:] {
			if strings.Contains(a, "%s") {
				a, subst = strings.ReplaceAll(a, "%s", target), true
			}
			args = append(args, a)
		}
		if !subst {
			args = append(args, target)
		}
		tried = append(tried, f[0])
		p, err := exec.LookPath(f[0])
		if err != nil {
			continue
		}
		cmd := exec.Command(p, args...)
		if err := cmd.Start(); err != nil {
			continue
		}
		go cmd.Wait() // reap it; a browser may outlive us
		return nil
	}
	return fmt.Errorf("no browser found (tried %s): set $BROWSER, or run `aixblock dashboard` and open the link it prints", strings.Join(tried, ", "))
}
