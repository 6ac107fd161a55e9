// The admin side of the user database: one interface (Admin) with a local
// backend (the CLI writes SQLite directly while authd is down) and a remote one
// (ipc frames to authd's admin socket), plus serve(), authd's decoder.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/directory.hpp"
#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::directory_admin {

// Only authd writes the database while it runs (DESIGN §3), so every change the
// CLI makes goes through this interface, whichever side executes it.
//
// Wire protocol (one ipc frame per call, DESIGN §4):
//   request: `op` = domain_add | domain_del | domain_list | user_add | user_del
//            | user_passwd | user_enable | user_quota | user_apop | user_list
//            | alias_add | alias_del | alias_list, with attributes
//              domain, force ("1"/"0"), address, password_hash, quota (decimal
//              bytes), format, enabled ("1"/"0"), apop_secret, target;
//            user_apop: `address`, and `apop_secret` to set it (the clear
//              text RFC 1939 §7 needs) or no `apop_secret` to clear it
//   reply:   `status` = ok | error, `error` = message when error;
//            domain_list: one `domain` per domain, in order;
//            user_list:   per user, in order, the group `address`, `format`,
//                         `quota`, `enabled` (always all four, in that order);
//            alias_list:  per alias `address` followed by its `target`s.
// Attributes are length-prefixed, so values may carry any byte.

struct UserSummary {
    std::string address;
    std::string mailbox_format;
    uint64_t quota_bytes = 0;  // 0 = unlimited
    bool enabled = true;
};

using AliasList = std::vector<std::pair<std::string, std::vector<std::string>>>;

class Admin {
public:
    virtual ~Admin() = default;

    virtual Status add_domain(std::string_view name) = 0;
    virtual Status delete_domain(std::string_view name, bool force) = 0;
    virtual Result<std::vector<std::string>> list_domains() = 0;

    virtual Status add_user(std::string_view address, std::string_view password_hash,
                            const directory::UserOptions& options) = 0;
    virtual Status delete_user(std::string_view address) = 0;
    virtual Status set_password(std::string_view address, std::string_view password_hash) = 0;
    virtual Status set_enabled(std::string_view address, bool enabled) = 0;
    virtual Status set_quota(std::string_view address, uint64_t quota_bytes) = 0;
    // nullopt clears the secret (the user can no longer use APOP).
    virtual Status set_apop_secret(std::string_view address, std::optional<std::string_view> secret) = 0;
    virtual Result<std::vector<UserSummary>> list_users(std::optional<std::string_view> domain) = 0;

    virtual Status add_alias(std::string_view address, std::string_view target) = 0;
    virtual Status delete_alias(std::string_view address, std::optional<std::string_view> target) = 0;
    virtual Result<AliasList> list_aliases() = 0;
};

// Direct access; `database` must outlive the returned object.
std::unique_ptr<Admin> local(directory::UserDatabase& database);

// One ipc::Client call per operation to authd's admin socket.
std::unique_ptr<Admin> remote(const std::string& admin_socket_path);

// authd's side: decodes `request`, runs it against `database`, encodes the
// reply. Unknown op or missing attribute → an error reply, never a crash.
ipc::Frame serve(directory::UserDatabase& database, const ipc::Frame& request);

// The encoder used by remote(), exposed so tests can feed serve() directly.
namespace request {
ipc::Frame add_domain(std::string_view name);
ipc::Frame delete_domain(std::string_view name, bool force);
ipc::Frame list_domains();
ipc::Frame add_user(std::string_view address, std::string_view password_hash, const directory::UserOptions& options);
ipc::Frame delete_user(std::string_view address);
ipc::Frame set_password(std::string_view address, std::string_view password_hash);
ipc::Frame set_enabled(std::string_view address, bool enabled);
ipc::Frame set_quota(std::string_view address, uint64_t quota_bytes);
ipc::Frame set_apop_secret(std::string_view address, std::optional<std::string_view> secret);
ipc::Frame list_users(std::optional<std::string_view> domain);
ipc::Frame add_alias(std::string_view address, std::string_view target);
ipc::Frame delete_alias(std::string_view address, std::optional<std::string_view> target);
ipc::Frame list_aliases();
}  // namespace request

// The matching reply decoders (also used by remote()).
namespace reply {
Status status(const ipc::Frame& reply);
Result<std::vector<std::string>> domains(const ipc::Frame& reply);
Result<std::vector<UserSummary>> users(const ipc::Frame& reply);
Result<AliasList> aliases(const ipc::Frame& reply);
}  // namespace reply

// Opens (creating when asked) the database for the CLI's local mode. When
// running as root and the file was just created, it is chowned to `owner`
// (config key auth_owner) with mode 0600, so authd, dropped to that user, can
// open it; its parent directory is created likewise.
Result<directory::UserDatabase> open_local_database(const std::string& path, const std::string& owner);

}  // namespace facteur::directory_admin
