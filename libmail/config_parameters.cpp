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
};

#undef FACTEUR_SERVICE_KEYS

}  // namespace

std::span<const Parameter> parameters() { return kParameters; }

}  // namespace facteur::config
