// The one table of facteur.conf parameters (DESIGN §7). The parser,
// `facteur config show`, and the test that checks facteur.conf(5) all read it.
#include "libmail/config.hpp"
#include "libmail/paths.hpp"

namespace facteur::config {
namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

// Keys every supervised service section has.
#define FACTEUR_SERVICE_KEYS(section, default_processes, max_processes)                       \
    {section, "enabled", Type::boolean, "yes", 0, 1, "whether master starts this service"},   \
    {                                                                                          \
        section, "processes", Type::integer, default_processes, 1, max_processes,            \
            "how many processes of this service master runs, sharing its listening sockets" \
    }

const Parameter kParameters[] = {
    // Locations.
    {"", "config_directory", Type::path, "/etc/facteur", 0, 0, "directory holding facteur.conf and aliases"},
    {"", "daemon_directory", Type::path, paths::daemon_directory, 0, 0,
     "directory holding the daemon programs master starts"},
    {"", "data_dir", Type::path, "/var/lib/facteur", 0, 0, "directory for persistent state (user database)"},
    {"", "spool_dir", Type::path, "/var/spool/facteur", 0, 0, "the mail queue (tmp, incoming, active, deferred ...)"},
    {"", "mail_dir", Type::path, "$data_dir/mail", 0, 0, "the mail store: one folder per user, <domain>/<localpart>"},
    {"", "runtime_dir", Type::path, "/run/facteur", 0, 0, "directory for sockets and the master pid file"},
    {"", "auth_db", Type::path, "$data_dir/auth/users.sqlite", 0, 0,
     "the SQLite user database (domains, users, aliases); only authd reads it while running"},
    {"", "alias_file", Type::path, "$config_directory/aliases", 0, 0,
     "classic aliases(5) file read by authd in addition to the database"},

    // Users the daemons run as when master starts as root (DESIGN §1).
    {"", "mail_owner", Type::string, "facteur", 0, 0, "user for smtpd, qmgr and relayd, owner of the spool"},
    {"", "vmail_owner", Type::string, "vmail", 0, 0, "user for deliverd, pop3d and imapd, owner of the mail store"},
    {"", "auth_owner", Type::string, "facteur-auth", 0, 0,
     "user for authd, the only owner of the user database"},

    // Logging.
    {"", "log_target", Type::string, "syslog", 0, 0, "where daemons log: syslog (facility mail) or stderr"},
    {"", "log_level", Type::string, "info", 0, 0, "least severe level logged: debug, info, notice, warning, error"},

    // Sockets between the daemons and for the admin CLI.
    {"", "master_control_socket", Type::path, "$runtime_dir/master.sock", 0, 0,
     "master's control socket (facteur status, stop, reload); root only"},
    {"", "auth_sasl_socket", Type::path, "$runtime_dir/auth-client", 0, 0,
     "authd's SASL socket speaking Dovecot's auth-client protocol (usable by Postfix)"},
    {"", "auth_sasl_socket_mode", Type::mode, "0666", 0, 0, "file mode of the SASL socket"},
    {"", "auth_lookup_socket", Type::path, "$runtime_dir/auth-lookup", 0, 0,
     "authd's socket for password checks, user and recipient lookups by the daemons"},
    {"", "auth_admin_socket", Type::path, "$runtime_dir/auth-admin", 0, 0,
     "authd's socket for changes made by the facteur CLI while authd runs; root only"},

    // TLS (used by smtpd, pop3d and imapd; checked by master at start).
    {"", "tls_cert_file", Type::path, "", 0, 0, "PEM certificate chain for TLS; empty disables TLS"},
    {"", "tls_key_file", Type::path, "", 0, 0, "PEM private key for tls_cert_file"},

    // Mail flow (issue 3).
    {"", "myhostname", Type::string, "", 0, 0,
     "this host's fully qualified name, in greetings, Received headers and bounces; empty means the system host name"},
    {"", "message_size_limit", Type::size, "50M", 1024, int64_t(4) << 30,
     "largest message accepted, by SMTP and by sendmail"},
    {"", "qmgr_socket", Type::path, "$runtime_dir/qmgr", 0, 0,
     "qmgr's socket: wake-ups from smtpd and sendmail, queue commands from the facteur CLI"},
    {"", "deliverd_socket", Type::path, "$runtime_dir/deliverd", 0, 0, "deliverd's socket, used by qmgr"},
    {"", "relayd_socket", Type::path, "$runtime_dir/relayd", 0, 0, "relayd's socket, used by qmgr"},

    // Mail out (issue 5): routing, decided by qmgr, carried out by relayd.
    {"", "relayhost", Type::string, "", 0, 0,
     "send all mail for other domains through this host instead of their MX: [host]:port (no MX lookup), host:port or host (MX lookup); empty sends directly"},
    {"", "transport_maps", Type::path, "", 0, 0,
     "routing table: lines 'domain transport' (.domain also matches subdomains, * is the default) with transport local, smtp, relay:[host]:port, relay:host:port or error:5.x.y text; empty means none"},
    {"", "dns_resolvers", Type::list, "", 0, 0,
     "DNS servers (address, address:port or [v6]:port) for MX and address lookups; empty means those of /etc/resolv.conf"},

    // Supervision by master.
    {"", "service_fast_exit_time", Type::duration, "5s", 100, kHour,
     "a process that exits sooner than this after start counts as failing at start"},
    {"", "service_fast_exit_limit", Type::integer, "5", 1, 1000,
     "after this many fast exits in a row a service is throttled"},
    {"", "service_throttle_time", Type::duration, "60s", 100, kDay,
     "how long a throttled service stays paused before master tries again"},
    {"", "service_stop_timeout", Type::duration, "10s", 100, 10 * kMinute,
     "how long master waits after SIGTERM before it sends SIGKILL"},

    // authd.
    FACTEUR_SERVICE_KEYS("authd", "1", 16),
    {"authd", "hash_workers", Type::integer, "2", 1, 64, "worker threads hashing and verifying passwords"},
    {"authd", "failure_free_attempts", Type::integer, "3", 0, 1000,
     "failed logins per client IP or user answered without delay"},
    {"authd", "failure_delay", Type::duration, "1s", 0, kMinute,
     "delay of the first throttled failure; doubles with each further failure"},
    {"authd", "failure_delay_max", Type::duration, "15s", 0, 10 * kMinute, "longest delay of a failure answer"},
    {"authd", "failure_lockout_count", Type::integer, "10", 1, 100000,
     "failures from one IP or for one user, within failure_window, after which logins are refused for a while"},
    {"authd", "failure_window", Type::duration, "15m", kSecond, kDay,
     "failures older than this are forgotten"},
    {"authd", "failure_lockout_time", Type::duration, "5m", kSecond, kDay,
     "how long logins stay refused after failure_lockout_count failures"},

    // smtpd (port 25) and submission (587, 465): the same program, two sections.
#define FACTEUR_SMTPD_KEYS(section)                                                                    \
    {section, "banner", Type::string, "$myhostname ESMTP facteur", 0, 0,                               \
     "text of the 220 greeting after the code"},                                                       \
    {section, "command_line_limit", Type::size, "4096", 512, 1 << 20,                                  \
     "longest SMTP command line, CRLF included (RFC 5321 allows 512; AUTH needs more)"},               \
    {section, "data_line_limit", Type::size, "1M", 1000, 64 << 20,                                     \
     "longest line inside a message; a longer one gets the message refused with 552 5.3.4"},           \
    {section, "recipient_limit", Type::integer, "1000", 1, 100000,                                     \
     "recipients per message; more get 452 4.5.3"},                                                    \
    {section, "error_limit", Type::integer, "20", 1, 10000,                                            \
     "errors in one session after which the connection is closed with 421 4.7.0"},                     \
    {section, "idle_timeout", Type::duration, "300s", kSecond, kHour,                                  \
     "a client silent this long is disconnected with 421 4.4.2"},                                      \
    {section, "client_connection_limit", Type::integer, "50", 1, 100000,                               \
     "simultaneous sessions from one client IP address, per process"},                                 \
    {section, "session_limit", Type::integer, "1000", 1, 1000000,                                      \
     "simultaneous sessions per process; more get 421 4.3.2"},                                         \
    {section, "hop_count_limit", Type::integer, "50", 1, 1000,                                         \
     "a message with more Received headers than this is refused as a loop (554 5.4.6)"},               \
    {section, "enable_expn", Type::boolean, "no", 0, 1,                                                \
     "answer EXPN (to authenticated sessions only); otherwise 502"},                                   \
    {section, "mynetworks", Type::list, "127.0.0.0/8 ::1/128", 0, 0,                                   \
     "client networks trusted to relay to other domains without authentication"},                      \
    {                                                                                                  \
        section, "auth_requires_tls", Type::boolean, "yes", 0, 1,                                      \
            "offer and accept AUTH only on TLS sessions (DESIGN 5)"                                    \
    }

    FACTEUR_SERVICE_KEYS("smtpd", "1", 64),
    {"smtpd", "listen", Type::list, "0.0.0.0:25", 0, 0,
     "addresses (host:port, [v6]:port or port) where smtpd accepts mail from anyone for local domains"},
    FACTEUR_SMTPD_KEYS("smtpd"),

    FACTEUR_SERVICE_KEYS("submission", "1", 64),
    {"submission", "listen", Type::list, "0.0.0.0:587", 0, 0,
     "addresses for mail submission with STARTTLS and AUTH (RFC 6409)"},
    {"submission", "listen_tls", Type::list, "0.0.0.0:465", 0, 0,
     "addresses for mail submission over implicit TLS (RFC 8314)"},
    FACTEUR_SMTPD_KEYS("submission"),
#undef FACTEUR_SMTPD_KEYS

    // qmgr.
    FACTEUR_SERVICE_KEYS("qmgr", "1", 1),
    {"qmgr", "scan_interval", Type::duration, "10s", 100, kHour,
     "how often qmgr rescans incoming/ and maildrop/ in case a wake-up was lost"},
    {"qmgr", "minimal_backoff_time", Type::duration, "300s", kSecond, kDay,
     "shortest wait before retrying a deferred message"},
    {"qmgr", "maximal_backoff_time", Type::duration, "4000s", kSecond, 7 * kDay,
     "longest wait between retries of a deferred message"},
    {"qmgr", "maximal_queue_lifetime", Type::duration, "5d", 0, 100 * kDay,
     "a message still undeliverable after this long is returned to its sender"},
    {"qmgr", "bounce_queue_lifetime", Type::duration, "5d", 0, 100 * kDay,
     "the same for delivery status notifications (null sender), which are dropped instead"},
    {"qmgr", "delivery_concurrency", Type::integer, "20", 1, 1000,
     "messages handed to deliverd and relayd at the same time"},
    {"qmgr", "active_limit", Type::integer, "2000", 1, 1000000,
     "messages held in active/ at once; more wait in incoming/"},
    {"qmgr", "relay_concurrency", Type::integer, "100", 1, 10000,
     "messages (per destination group) handed to relayd at the same time"},
    {"qmgr", "delay_warning_time", Type::duration, "4h", 0, 100 * kDay,
     "tell the sender (RFC 3464 action delayed) once when a message is still undelivered after this long, unless its NOTIFY excludes DELAY; 0 disables"},

    // relayd: the sending side (MX resolution, SMTP client).
    FACTEUR_SERVICE_KEYS("relayd", "1", 16),
    {"relayd", "helo_name", Type::string, "$myhostname", 0, 0, "name relayd gives in EHLO/HELO"},
    {"relayd", "bind_address", Type::string, "", 0, 0,
     "local IPv4 address for outgoing connections; empty lets the kernel choose"},
    {"relayd", "bind_address6", Type::string, "", 0, 0,
     "local IPv6 address for outgoing connections; empty lets the kernel choose"},
    {"relayd", "ipv6", Type::boolean, "yes", 0, 1,
     "also try IPv6 addresses of mail servers (IPv6 first, then IPv4, per host)"},
    {"relayd", "mx_address_limit", Type::integer, "5", 1, 100,
     "most server addresses tried for one destination in one attempt"},
    {"relayd", "connect_timeout", Type::duration, "30s", kSecond, 10 * kMinute,
     "time to establish the TCP connection to a mail server"},
    {"relayd", "greeting_timeout", Type::duration, "300s", kSecond, kHour,
     "wait for the 220 greeting (RFC 5321 4.5.3.2.1: 5 minutes)"},
    {"relayd", "helo_timeout", Type::duration, "300s", kSecond, kHour,
     "wait for the reply to EHLO, HELO, STARTTLS and AUTH"},
    {"relayd", "mail_timeout", Type::duration, "300s", kSecond, kHour,
     "wait for the reply to MAIL FROM (RFC 5321 4.5.3.2.2: 5 minutes)"},
    {"relayd", "rcpt_timeout", Type::duration, "300s", kSecond, kHour,
     "wait for the reply to each RCPT TO (RFC 5321 4.5.3.2.3: 5 minutes)"},
    {"relayd", "data_timeout", Type::duration, "120s", kSecond, kHour,
     "wait for the 354 reply to DATA (RFC 5321 4.5.3.2.4: 2 minutes)"},
    {"relayd", "data_block_timeout", Type::duration, "180s", kSecond, kHour,
     "longest time the server may take to accept a block of message data (RFC 5321 4.5.3.2.5: 3 minutes)"},
    {"relayd", "data_done_timeout", Type::duration, "600s", kSecond, kHour,
     "wait for the reply after the final dot (RFC 5321 4.5.3.2.6: 10 minutes)"},
    {"relayd", "quit_timeout", Type::duration, "60s", kSecond, kHour, "wait for the reply to QUIT and RSET"},
    {"relayd", "destination_concurrency_limit", Type::integer, "20", 1, 1000,
     "most simultaneous connections to one destination"},
    {"relayd", "initial_destination_concurrency", Type::integer, "5", 1, 1000,
     "connections to a destination at first; one more after each success (slow start), back to one after a failure"},
    {"relayd", "connection_cache_time", Type::duration, "2s", 0, 5 * kMinute,
     "how long an idle connection is kept for more mail to the same destination; 0 closes at once"},
    {"relayd", "connection_reuse_limit", Type::integer, "100", 1, 100000,
     "most messages sent over one connection"},
    {"relayd", "tls_security_level", Type::string, "may", 0, 0,
     "STARTTLS default: none (never), may (when offered, unverified), encrypt (required, unverified) or verify (required, certificate checked against the CA store and the server name)"},
    {"relayd", "tls_policy_maps", Type::path, "", 0, 0,
     "per-destination TLS policy: lines 'domain level' (level as tls_security_level; .domain matches subdomains); empty means none"},
    {"relayd", "tls_ca_file", Type::path, "", 0, 0,
     "PEM CA bundle used by the verify level; empty means the system CA store"},
    {"relayd", "relayhost_credentials", Type::path, "", 0, 0,
     "SASL credentials for relay hosts, lines 'nexthop user:password' (nexthop as written in relayhost or the transport table); opened by master as root, so it can be mode 0600 root"},

    // deliverd.
    FACTEUR_SERVICE_KEYS("deliverd", "1", 16),
    {"deliverd", "workers", Type::integer, "4", 1, 64, "threads writing mailboxes (fsync is blocking)"},
    {"deliverd", "pipe_timeout", Type::duration, "60s", kSecond, kHour,
     "a |command alias target running longer than this is killed and the delivery deferred"},
    {"deliverd", "quota_exceeded_permanent", Type::boolean, "no", 0, 1,
     "bounce mail for a mailbox over quota (5.2.2) instead of deferring it (4.2.2)"},

    // pop3d (110 with STLS, 995 implicit TLS).
    FACTEUR_SERVICE_KEYS("pop3d", "1", 64),
    {"pop3d", "listen", Type::list, "0.0.0.0:110", 0, 0,
     "addresses for POP3 with STLS (RFC 1939, RFC 2595)"},
    {"pop3d", "listen_tls", Type::list, "0.0.0.0:995", 0, 0,
     "addresses for POP3 over implicit TLS (RFC 8314); ignored without tls_cert_file"},
    {"pop3d", "banner", Type::string, "facteur POP3 ready", 0, 0,
     "text of the +OK greeting (the APOP timestamp is added after it)"},
    {"pop3d", "plaintext_auth", Type::string, "loopback", 0, 0,
     "where USER/PASS and the PLAIN and LOGIN mechanisms work without TLS: no, loopback (clients on 127.0.0.0/8 and ::1) or yes"},
    {"pop3d", "apop", Type::boolean, "yes", 0, 1,
     "offer APOP (RFC 1939 7) in the greeting, for users who have an APOP secret"},
    {"pop3d", "command_line_limit", Type::size, "4096", 256, 1 << 20,
     "longest command line, CRLF included (RFC 2449 allows 255; AUTH responses need more)"},
    {"pop3d", "login_failure_limit", Type::integer, "3", 1, 100,
     "failed logins in one session after which the connection is closed"},
    {"pop3d", "auth_failure_delay", Type::duration, "1s", 0, 30 * kSecond,
     "pause before answering a failed login, to slow down password guessing"},
    {"pop3d", "error_limit", Type::integer, "50", 1, 10000,
     "bad commands in one session after which the connection is closed"},
    {"pop3d", "login_idle_timeout", Type::duration, "60s", kSecond, kHour,
     "a client that has not logged in and is silent this long is disconnected"},
    {"pop3d", "idle_timeout", Type::duration, "600s", 10 * kMinute, 24 * kHour,
     "a logged-in client silent this long is disconnected (RFC 1939 3: at least 10 minutes); nothing is deleted"},
    {"pop3d", "client_connection_limit", Type::integer, "50", 1, 100000,
     "simultaneous sessions from one client IP address, per process"},
    {"pop3d", "session_limit", Type::integer, "1000", 1, 1000000,
     "simultaneous sessions per process; more get -ERR [SYS/TEMP] at the greeting"},
};

#undef FACTEUR_SERVICE_KEYS

}  // namespace

std::span<const Parameter> parameters() { return kParameters; }

}  // namespace facteur::config
