package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/seal"
	"github.com/silofl/silo/internal/server"
	"github.com/silofl/silo/internal/sqlstore"
	"github.com/silofl/silo/internal/ui"
)

const serverUsage = `Usage: silo server [--addr :8080] [--data ./silo-data] [--database sqlite|postgres://…]
                   [--admin-email E --admin-password P] [--public-url URL]
                   [--local-runners-root DIR] [--trusted-proxies CIDR,...]

Runs the workspace server: the API under /api/v1, the web UI, /healthz and
/metrics. With no flags it keeps its state in an SQLite database in ./silo-data.

With --local-runners-root DIR a Workspace Administrator may start local
runners as child processes of the server; their storage must be a folder
inside DIR, which must share nothing with the server's data, key or
configuration and hold nothing the server did not create for runners.
Without it the server starts no runners: run 'silo runner' where the data is.

The first admin comes from --admin-email/--admin-password (or
$SILO_ADMIN_EMAIL/$SILO_ADMIN_PASSWORD) on first start; without them, open
the printed /setup page to create one.

Behind a reverse proxy, set --public-url (invitation links are built from it)
and --trusted-proxies to the proxies' addresses: only their X-Forwarded-For
header is believed when sign-in attempts are counted per client address.
`

// serverConfig is what 'silo server' is started with.
type serverConfig struct {
	Addr          string
	DataDir       string
	Database      string // "sqlite" (or empty) or a postgres:// URL
	AdminEmail    string
	AdminPassword string
	PublicURL     string
	// TrustedProxies lists the reverse proxies (addresses and CIDR blocks,
	// comma-separated) whose X-Forwarded-For header is believed.
	TrustedProxies string
	SecretKey      string // base64; empty means the key file in DataDir
	// LocalRunnersRoot is the folder for the storage of the runners the
	// server starts; empty means it starts none.
	LocalRunnersRoot string
	// Cloud storage the server may create runners' storage in.
	S3Endpoint            string
	AzureConnectionString string
	// SMTP relay for invitation emails (optional).
	SMTPURL, SMTPFrom string
	LogFormat         string // text or json
	Logger            *slog.Logger
	// HeartbeatInterval is how often runners report; zero means
	// silo.DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
}

// runningServer is a started server; tests and the quickstart use it directly.
type runningServer struct {
	URL    string
	DB     *sqlstore.DB
	Server *server.Server
	http   *http.Server
	done   chan error
	// stopBackground ends the server's background work and the runners it
	// started.
	stopBackground context.CancelFunc
}

// startServer opens the store, creates the first admin if asked, and starts
// serving on cfg.Addr (":0" picks a free port).
func startServer(ctx context.Context, cfg serverConfig) (*runningServer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	proxies, err := server.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	dsn := cfg.Database
	if dsn == "" || dsn == "sqlite" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
		}
		dsn = filepath.Join(cfg.DataDir, "silo.db")
	} else if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, silo.Errorf(silo.EINVALID, "--database %q: use sqlite or a postgres://user:password@host:port/dbname URL", dsn)
	}
	db := sqlstore.New(dsn)
	db.Logger = log
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	key, err := serverKey(cfg)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	srv := server.New(db)
	if cfg.HeartbeatInterval > 0 {
		srv.HeartbeatInterval = cfg.HeartbeatInterval
	}
	srv.AddRoutes(ui.New(srv)...)
	if cfg.LocalRunnersRoot != "" {
		if srv.LocalRunnersRoot, err = server.CheckLocalRunnersRoot(cfg.LocalRunnersRoot, serverOwnPaths(cfg, dsn)); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	srv.Logger = log
	srv.PublicURL = cfg.PublicURL
	srv.TrustedProxies = proxies
	srv.SecretKey = key
	srv.Launch = launchChild
	srv.Cloud = cloudStorage(cfg)
	if cfg.SMTPURL != "" {
		if srv.Mailer, err = server.ParseSMTPURL(cfg.SMTPURL, cfg.SMTPFrom); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("--smtp: %w", err)
		}
	}
	if cfg.AdminEmail != "" || cfg.AdminPassword != "" {
		u, created, err := srv.BootstrapAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword)
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("create the first admin: %s", silo.ErrorMessage(err))
		}
		if created {
			log.Info("created the first admin", "email", u.Email)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	rs := &runningServer{DB: db, Server: srv, done: make(chan error, 1),
		http: &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	local := "http://" + displayAddr(ln.Addr().(*net.TCPAddr))
	rs.URL = cfg.PublicURL
	if rs.URL == "" {
		rs.URL = local
	}
	srv.InternalURL = local
	if host, err := os.Hostname(); err == nil {
		// The same server restarted takes its sessions' leases back at once.
		srv.Replica = host + "/" + ln.Addr().String()
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	rs.stopBackground = stop
	go srv.Run(runCtx)
	go func() { rs.done <- rs.http.Serve(ln) }()
	return rs, nil
}

// serverOwnPaths lists what runners the server starts must never reach:
// its data directory, key file, database, the CLI's saved login and the
// binary itself.
func serverOwnPaths(cfg serverConfig, dsn string) []string {
	paths := []string{cfg.DataDir, filepath.Join(cfg.DataDir, "server.key")}
	if !strings.HasPrefix(dsn, "postgres") {
		paths = append(paths, dsn)
	}
	if p, err := configPath(); err == nil {
		paths = append(paths, p)
	}
	if p, err := os.Executable(); err == nil {
		paths = append(paths, p)
	}
	return paths
}

// cloudStorage configures the server's access to cloud storage from the
// environment's standard AWS variables and the flags. Without credentials
// the server does not touch cloud storage: deployment bundles create it.
func cloudStorage(cfg serverConfig) server.CloudStorage {
	var c server.CloudStorage
	if id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		c.S3 = &blob.S3Config{Endpoint: cfg.S3Endpoint, UsePathStyle: cfg.S3Endpoint != "",
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN")}
	}
	if cfg.AzureConnectionString != "" {
		c.Azure = &blob.AzureConfig{ConnectionString: cfg.AzureConnectionString}
	}
	return c
}

// serverKey returns the key that seals secrets at rest: --secret-key (or
// $SILO_SECRET_KEY), needed when several replicas share a database, else a
// key file created in the data directory.
func serverKey(cfg serverConfig) (*seal.Key, error) {
	if cfg.SecretKey != "" {
		k, err := seal.ParseKey(cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("--secret-key: %w", err)
		}
		return k, nil
	}
	return seal.LoadOrCreateKeyFile(filepath.Join(cfg.DataDir, "server.key"))
}

// displayAddr turns a listening address into one a browser can open.
func displayAddr(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", a.Port)
	}
	return a.String()
}

// Shutdown stops accepting requests, lets those in flight finish (up to
// 10 seconds) and closes the store.
func (rs *runningServer) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs.stopBackground()
	err := rs.http.Shutdown(ctx)
	return errors.Join(err, rs.DB.Close())
}

func cmdServer(ctx context.Context, args []string, s streams) int {
	fs := flag.NewFlagSet("silo server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := serverConfig{}
	fs.StringVar(&cfg.Addr, "addr", envOr("SILO_ADDR", ":8080"), "address to listen on")
	fs.StringVar(&cfg.DataDir, "data", envOr("SILO_DATA", "./silo-data"), "data directory (SQLite database, server key)")
	fs.StringVar(&cfg.Database, "database", envOr("SILO_DATABASE", "sqlite"), "sqlite or a postgres:// URL")
	fs.StringVar(&cfg.AdminEmail, "admin-email", os.Getenv("SILO_ADMIN_EMAIL"), "first admin's email")
	fs.StringVar(&cfg.AdminPassword, "admin-password", os.Getenv("SILO_ADMIN_PASSWORD"), "first admin's password")
	fs.StringVar(&cfg.PublicURL, "public-url", os.Getenv("SILO_PUBLIC_URL"), "URL users reach the server at (for links)")
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", os.Getenv("SILO_TRUSTED_PROXIES"), "reverse proxies whose X-Forwarded-For is believed: addresses or CIDR blocks, comma-separated")
	fs.StringVar(&cfg.SecretKey, "secret-key", os.Getenv("SILO_SECRET_KEY"), "base64 key sealing secrets at rest (default: a key file in --data)")
	fs.StringVar(&cfg.LocalRunnersRoot, "local-runners-root", os.Getenv("SILO_LOCAL_RUNNERS_ROOT"), "folder for the storage of local runners the server starts (default: it starts none)")
	fs.StringVar(&cfg.S3Endpoint, "s3-endpoint", os.Getenv("SILO_S3_ENDPOINT"), "S3-compatible endpoint for runners' buckets (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
	fs.StringVar(&cfg.AzureConnectionString, "azure-storage", os.Getenv("SILO_AZURE_STORAGE"), "Azure Storage connection string for runners' containers")
	fs.StringVar(&cfg.SMTPURL, "smtp", os.Getenv("SILO_SMTP"), "SMTP relay for invitation emails: smtp://user:password@host:587 (optional)")
	fs.StringVar(&cfg.SMTPFrom, "smtp-from", envOr("SILO_SMTP_FROM", "silo@localhost.localdomain"), "sender address of invitation emails")
	fs.StringVar(&cfg.LogFormat, "log-format", envOr("SILO_LOG_FORMAT", "text"), "text or json")
	heartbeat := fs.String("heartbeat-interval", envOr("SILO_HEARTBEAT_INTERVAL", silo.DefaultHeartbeatInterval.String()),
		"how often runners report; a runner silent for three intervals is offline, and sessions stop waiting for it")
	if code, done := parseFlags(fs, args, serverUsage, s); done {
		return code
	}
	hb, err := time.ParseDuration(*heartbeat)
	if err != nil || hb < time.Second || hb > 5*time.Minute {
		fmt.Fprintf(s.Stderr, "silo server: --heartbeat-interval %q: use a duration from 1s to 5m, such as 10s\n", *heartbeat)
		return 2
	}
	cfg.HeartbeatInterval = hb
	switch cfg.LogFormat {
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(s.Stderr, nil))
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(s.Stderr, nil))
	default:
		fmt.Fprintf(s.Stderr, "silo server: --log-format %q: use text or json\n", cfg.LogFormat)
		return 2
	}
	rs, err := startServer(ctx, cfg)
	if err != nil {
		fmt.Fprintf(s.Stderr, "silo server: %v\n", err)
		return 1
	}
	cfg.Logger.Info("Silo server listening", "url", rs.URL, "database", rs.DB.Dialect(), "version", silo.Version)
	if n, err := rs.DB.CountUsers(ctx); err == nil && n == 0 {
		fmt.Fprintf(s.Stdout, "No admin yet: open %s/setup to create the first one.\n", rs.URL)
	}
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
		if err := rs.Shutdown(); err != nil {
			fmt.Fprintf(s.Stderr, "silo server: shutdown: %v\n", err)
			return 1
		}
		return 0
	case err := <-rs.done:
		fmt.Fprintf(s.Stderr, "silo server: %v\n", err)
		_ = rs.DB.Close()
		return 1
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
