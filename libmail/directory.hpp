// The user database (DESIGN §3 "User database"): domains, users, aliases in
// SQLite, and address resolution over them. Only authd opens it for writing
// while the suite runs; the CLI writes it directly only when authd is down.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/result.hpp"
#include "libmail/sqlite.hpp"

namespace facteur::directory {

inline constexpr int schema_version = 1;
// Alias expansion limits: deeper or wider expansions are configuration
// mistakes (or loops that slipped past detection), reported as errors.
inline constexpr int max_alias_depth = 16;
inline constexpr size_t max_alias_targets = 1000;
inline constexpr size_t max_domain_length = 253;  // RFC 1035 §2.3.4 (text form)
inline constexpr size_t max_localpart_length = 64;  // RFC 5321 §4.5.3.1.1
// APOP (RFC 1939 §7) digests a shared secret, so it is stored in clear text;
// no sane one is longer than this.
inline constexpr size_t max_apop_secret_length = 256;

struct User {
    int64_t id = 0;
    std::string localpart;  // lowercased
    std::string domain;     // lowercased
    std::string password_hash;
    std::optional<std::string> apop_secret;
    uint64_t quota_bytes = 0;  // 0 = unlimited
    std::string mailbox_format = "maildir";  // "maildir" | "mbox"
    bool enabled = true;

    std::string address() const { return localpart + "@" + domain; }
};

struct UserOptions {
    uint64_t quota_bytes = 0;
    std::string mailbox_format = "maildir";
    std::optional<std::string> apop_secret;
    bool enabled = true;
};

struct Resolution {
    enum Kind { local_user, alias, unknown_local, remote };
    Kind kind = unknown_local;
    std::optional<User> user;          // local_user only
    std::vector<std::string> targets;  // alias only: final targets, in order, deduplicated
};

// Local part and domain, lowercased and validated.
struct SplitAddress {
    std::string localpart;
    std::string domain;
};

// Domain syntax: dot-separated labels of letters, digits and hyphens (no
// leading/trailing hyphen, each ≤ 63), total ≤ 253; a trailing dot is refused.
Status check_domain_name(std::string_view domain);
// Non-empty, ≤ 64 bytes, no control characters, whitespace or '@'.
Status check_localpart(std::string_view localpart);
// "local@domain", both halves checked, returned lowercased.
Result<SplitAddress> split_address(std::string_view address);
// An APOP secret: 1..max_apop_secret_length bytes, no control characters
// (bytes below 0x20 and 0x7f); other bytes, UTF-8 included, are kept as given.
Status check_apop_secret(std::string_view secret);
// Lowercases ASCII letters only (local parts may hold UTF-8 bytes).
std::string lowercase(std::string_view text);

// What an alias target is: an address (user@domain), a pipe `|command`, or
// an absolute file path `/path`. Bare names (no '@') are accepted only in the
// static aliases file, where they mean "this name in every local domain".
enum class TargetKind { address, pipe, file };
Result<TargetKind> classify_target(std::string_view target);

// The classic sendmail/Postfix aliases(5) format:
//   name: target, target2
//       continued target   (continuation lines start with whitespace)
//   # comment
//   name: "|/usr/bin/foo arg"
// Names are lowercased; repeated names accumulate targets. `:include:` is
// refused. Errors name the line ("line 7: ...").
Result<std::map<std::string, std::vector<std::string>>> parse_aliases_file(std::string_view text);

class UserDatabase {
public:
    // `create`: make the file (mode 0600, parent directory must exist) and the
    // schema if missing. Without it the file must exist. The schema is
    // migrated to schema_version either way; a newer version is refused.
    static Result<UserDatabase> open(const std::string& path, bool create);

    UserDatabase(UserDatabase&&) noexcept = default;
    UserDatabase& operator=(UserDatabase&&) noexcept = default;
    UserDatabase(const UserDatabase&) = delete;
    UserDatabase& operator=(const UserDatabase&) = delete;

    // Domains.
    Status add_domain(std::string_view name);
    // Refuses while users or aliases of the domain exist unless `force`,
    // which deletes them with it.
    Status delete_domain(std::string_view name, bool force);
    Result<std::vector<std::string>> list_domains();  // sorted
    Result<bool> is_local_domain(std::string_view name);

    // Users. `address` is local@domain; the domain must exist.
    Status add_user(std::string_view address, std::string_view password_hash, const UserOptions& options);
    Status delete_user(std::string_view address);
    Status set_password(std::string_view address, std::string_view password_hash);
    Status set_enabled(std::string_view address, bool enabled);
    Status set_quota(std::string_view address, uint64_t quota_bytes);
    // Sets (or, with nullopt, clears) the user's APOP secret; the user must
    // exist and the secret pass check_apop_secret. Clearing an absent secret
    // is not an error. Without a secret the user cannot log in with APOP.
    Status set_apop_secret(std::string_view address, std::optional<std::string_view> secret);
    Result<std::optional<User>> find_user(std::string_view address);
    Result<std::vector<User>> list_users(std::optional<std::string_view> domain);  // sorted by domain, localpart

    // Aliases. `address` must be in a local domain; `target` is an address,
    // `|command args` or `/absolute/file`. Adding an existing pair is an error.
    Status add_alias(std::string_view address, std::string_view target);
    // Without `target`, every target of `address` goes.
    Status delete_alias(std::string_view address, std::optional<std::string_view> target);
    // Sorted by address; targets in insertion order.
    Result<std::vector<std::pair<std::string, std::vector<std::string>>>> list_aliases();

    // Aliases from /etc/facteur/aliases (see parse_aliases_file). A key
    // without '@' applies to every local domain; merged with the database's
    // aliases during resolve() (both sets of targets apply).
    void set_static_aliases(std::map<std::string, std::vector<std::string>> aliases);

    // remote if the domain is not local; alias (expanded recursively, loops
    // skipped, limits above) wins over a user of the same address, like
    // Postfix's virtual_alias_maps; local_user for an enabled user;
    // unknown_local otherwise (including disabled users).
    Result<Resolution> resolve(std::string_view address);

    sqlite::Database& database() { return database_; }

private:
    explicit UserDatabase(sqlite::Database database) : database_(std::move(database)) {}
    Status migrate();
    Result<bool> domain_exists(std::string_view domain);
    // Targets for one lowercased address from the database and static aliases.
    Result<std::vector<std::string>> alias_targets(const SplitAddress& address);
    Result<std::optional<User>> find_split_user(const SplitAddress& address);
    Status update_user(std::string_view address, std::string_view sql_set, const std::function<void(sqlite::Statement&)>& bind);

    sqlite::Database database_;
    std::map<std::string, std::vector<std::string>> static_aliases_;
};

}  // namespace facteur::directory
