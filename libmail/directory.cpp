// The user database (DESIGN §3): schema, domain/user/alias operations and
// address resolution, over one SQLite connection.
#include "libmail/directory.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::directory {

namespace {

// Version 1. Addresses and domains are stored lowercased, so plain `=`
// comparisons are case-insensitive lookups (local parts compare
// case-insensitively, as Postfix and Dovecot do by default).
constexpr std::string_view schema_v1 = R"sql(
CREATE TABLE domains (
    name    TEXT PRIMARY KEY NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    localpart      TEXT NOT NULL,
    domain         TEXT NOT NULL REFERENCES domains(name) ON DELETE RESTRICT,
    password_hash  TEXT NOT NULL,
    apop_secret    TEXT NULL,
    quota_bytes    INTEGER NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
    mailbox_format TEXT NOT NULL DEFAULT 'maildir' CHECK (mailbox_format IN ('maildir', 'mbox')),
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created        INTEGER NOT NULL,
    UNIQUE (localpart, domain)
);
CREATE TABLE aliases (
    id      INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    target  TEXT NOT NULL,
    UNIQUE (address, target)
);
)sql";

constexpr std::string_view user_columns =
    "id, localpart, domain, password_hash, apop_secret, quota_bytes, mailbox_format, enabled";

User read_user(const sqlite::Statement& row) {
    User user;
    user.id = row.column_int64(0);
    user.localpart = row.column_text(1);
    user.domain = row.column_text(2);
    user.password_hash = row.column_text(3);
    if (!row.column_is_null(4)) user.apop_secret = row.column_text(4);
    int64_t quota = row.column_int64(5);
    user.quota_bytes = quota > 0 ? static_cast<uint64_t>(quota) : 0;
    user.mailbox_format = row.column_text(6);
    user.enabled = row.column_int64(7) != 0;
    return user;
}

Status check_quota(uint64_t quota_bytes) {
    if (quota_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return make_error(fmt::format("quota {} bytes is too large", quota_bytes));
    return {};
}

Status check_secret(std::string_view what, std::string_view value) {
    for (char c : value)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return make_error(fmt::format("{} contains a control character", what));
    return {};
}

Status check_user_options(std::string_view password_hash, const UserOptions& options) {
    if (password_hash.empty()) return make_error("password hash is empty");
    if (Status s = check_secret("password hash", password_hash); !s) return s;
    if (options.apop_secret) {
        if (Status s = check_apop_secret(*options.apop_secret); !s) return s;
    }
    if (options.mailbox_format != "maildir" && options.mailbox_format != "mbox")
        return make_error(fmt::format("mailbox format {} is not maildir or mbox",
                                      log::printable(options.mailbox_format, 64)));
    return check_quota(options.quota_bytes);
}

std::string domain_error(std::string_view domain) { return fmt::format("domain {} does not exist", domain); }
std::string user_error(const SplitAddress& a) {
    return fmt::format("user {}@{} does not exist", a.localpart, a.domain);
}

Result<std::string> normalized_domain(std::string_view name) {
    if (Status s = check_domain_name(name); !s) return make_error(s.error());
    return lowercase(name);
}

// An alias target as stored: addresses lowercased, pipes and files verbatim.
Result<std::string> normalized_target(std::string_view target) {
    auto kind = classify_target(target);
    if (!kind) return make_error(kind.error());
    if (*kind != TargetKind::address) return std::string(target);
    auto split = split_address(target);
    return split->localpart + "@" + split->domain;
}

}  // namespace

Status check_apop_secret(std::string_view secret) {
    if (secret.empty()) return make_error("APOP secret is empty");
    if (secret.size() > max_apop_secret_length)
        return make_error(fmt::format("APOP secret is too long (at most {} bytes)", max_apop_secret_length));
    return check_secret("APOP secret", secret);
}

Result<UserDatabase> UserDatabase::open(const std::string& path, bool create) {
    if (path.empty()) return make_error("user database path is empty");
    if (create) {
        std::string parent = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
        if (parent.empty()) parent = "/";
        struct stat info {};
        if (::stat(parent.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
            return make_error(fmt::format("cannot create user database {}: directory {} does not exist", path, parent));
        // Made here, not by SQLite, so it is 0600 whatever the umask: it holds
        // password hashes (SQLite gives its -wal/-shm files the same mode).
        // O_EXCL: an existing file (or a symlink an admin put there) is left
        // as it is and opened below.
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!fd && errno != EEXIST)
            return make_error(fmt::format("cannot create user database {}: {}", path, std::strerror(errno)));
    } else {
        struct stat info {};
        if (::stat(path.c_str(), &info) != 0)
            return make_error(fmt::format("user database {} does not exist (create it first)", path));
    }
    auto database = sqlite::Database::open(path, sqlite::Mode::read_write);
    if (!database) return make_error(database.error());
    UserDatabase users(std::move(*database));
    if (Status s = users.migrate(); !s) return make_error(fmt::format("user database {}: {}", path, s.error()));
    return users;
}

Status UserDatabase::migrate() {
    sqlite::Transaction transaction(database_);
    if (!transaction.begin_status()) return transaction.begin_status();
    auto version_query = database_.prepare("PRAGMA user_version");
    if (!version_query) return make_error(version_query.error());
    auto row = version_query->step();
    if (!row) return make_error(row.error());
    int64_t version = *row ? version_query->column_int64(0) : 0;
    version_query->reset();

    if (version > schema_version)
        return make_error(fmt::format("schema version {} is newer than this facteur understands ({})", version,
                                      schema_version));
    if (version == schema_version) return transaction.commit();
    if (version == 0) {
        // Version 0 with tables is someone else's database: do not touch it.
        auto tables = database_.prepare("SELECT count(*) FROM sqlite_master");
        if (!tables) return make_error(tables.error());
        auto counted = tables->step();
        if (!counted) return make_error(counted.error());
        if (*counted && tables->column_int64(0) != 0) return make_error("not a facteur user database (unknown tables)");
        tables->reset();
        if (Status s = database_.exec(schema_v1); !s) return make_error("cannot create schema: " + s.error());
    }
    // Later versions add their steps here, each from the previous one.
    if (Status s = database_.exec(fmt::format("PRAGMA user_version = {}", schema_version)); !s) return s;
    return transaction.commit();
}

// ---- domains ----

Result<bool> UserDatabase::domain_exists(std::string_view domain) {
    auto query = database_.prepare("SELECT 1 FROM domains WHERE name = ?1");
    if (!query) return make_error(query.error());
    query->bind(1, domain);
    return query->step();
}

Status UserDatabase::add_domain(std::string_view name) {
    auto domain = normalized_domain(name);
    if (!domain) return make_error(domain.error());
    sqlite::Transaction transaction(database_);
    if (!transaction.begin_status()) return transaction.begin_status();
    auto exists = domain_exists(*domain);
    if (!exists) return make_error(exists.error());
    if (*exists) return make_error(fmt::format("domain {} already exists", *domain));
    auto insert = database_.prepare("INSERT INTO domains (name, created) VALUES (?1, CAST(strftime('%s', 'now') AS INTEGER))");
    if (!insert) return make_error(insert.error());
    if (Status s = insert->bind(1, *domain).run(); !s) return s;
    return transaction.commit();
}

Status UserDatabase::delete_domain(std::string_view name, bool force) {
    auto domain = normalized_domain(name);
    if (!domain) return make_error(domain.error());
    sqlite::Transaction transaction(database_);
    if (!transaction.begin_status()) return transaction.begin_status();
    auto exists = domain_exists(*domain);
    if (!exists) return make_error(exists.error());
    if (!*exists) return make_error(domain_error(*domain));

    // Aliases are keyed by address text; "@domain" is their suffix.
    std::string suffix = "@" + *domain;
    constexpr std::string_view alias_match = "substr(address, -length(?1)) = ?1";
    auto count_users = database_.prepare("SELECT count(*) FROM users WHERE domain = ?1");
    auto count_aliases = database_.prepare(fmt::format("SELECT count(*) FROM aliases WHERE {}", alias_match));
    if (!count_users) return make_error(count_users.error());
    if (!count_aliases) return make_error(count_aliases.error());
    auto users_row = count_users->bind(1, *domain).step();
    auto aliases_row = count_aliases->bind(1, suffix).step();
    if (!users_row) return make_error(users_row.error());
    if (!aliases_row) return make_error(aliases_row.error());
    int64_t users = count_users->column_int64(0);
    int64_t aliases = count_aliases->column_int64(0);
    count_users->reset();
    count_aliases->reset();

    if ((users > 0 || aliases > 0) && !force)
        return make_error(fmt::format("domain {} still has {} user{} and {} alias{} (use force to delete them too)",
                                      *domain, users, users == 1 ? "" : "s", aliases, aliases == 1 ? "" : "es"));
    auto delete_aliases = database_.prepare(fmt::format("DELETE FROM aliases WHERE {}", alias_match));
    auto delete_users = database_.prepare("DELETE FROM users WHERE domain = ?1");
    auto delete_domain = database_.prepare("DELETE FROM domains WHERE name = ?1");
    if (!delete_aliases) return make_error(delete_aliases.error());
    if (!delete_users) return make_error(delete_users.error());
    if (!delete_domain) return make_error(delete_domain.error());
    if (Status s = delete_aliases->bind(1, suffix).run(); !s) return s;
    if (Status s = delete_users->bind(1, *domain).run(); !s) return s;
    if (Status s = delete_domain->bind(1, *domain).run(); !s) return s;
    return transaction.commit();
}

Result<std::vector<std::string>> UserDatabase::list_domains() {
    auto query = database_.prepare("SELECT name FROM domains ORDER BY name");
    if (!query) return make_error(query.error());
    std::vector<std::string> domains;
    for (;;) {
        auto row = query->step();
        if (!row) return make_error(row.error());
        if (!*row) break;
        domains.push_back(query->column_text(0));
    }
    return domains;
}

Result<bool> UserDatabase::is_local_domain(std::string_view name) {
    auto domain = normalized_domain(name);
    if (!domain) return make_error(domain.error());
    return domain_exists(*domain);
}

// ---- users ----

Status UserDatabase::add_user(std::string_view address, std::string_view password_hash, const UserOptions& options) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    if (Status s = check_user_options(password_hash, options); !s) return s;

    sqlite::Transaction transaction(database_);
    if (!transaction.begin_status()) return transaction.begin_status();
    auto exists = domain_exists(split->domain);
    if (!exists) return make_error(exists.error());
    if (!*exists) return make_error(domain_error(split->domain));
    auto existing = find_split_user(*split);
    if (!existing) return make_error(existing.error());
    if (*existing) return make_error(fmt::format("user {}@{} already exists", split->localpart, split->domain));

    auto insert = database_.prepare(
        "INSERT INTO users (localpart, domain, password_hash, apop_secret, quota_bytes, mailbox_format, enabled, "
        "created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CAST(strftime('%s', 'now') AS INTEGER))");
    if (!insert) return make_error(insert.error());
    insert->bind(1, split->localpart).bind(2, split->domain).bind(3, password_hash);
    if (options.apop_secret)
        insert->bind(4, std::string_view(*options.apop_secret));
    else
        insert->bind(4, nullptr);
    insert->bind(5, static_cast<int64_t>(options.quota_bytes))
        .bind(6, std::string_view(options.mailbox_format))
        .bind(7, int64_t{options.enabled ? 1 : 0});
    if (Status s = insert->run(); !s) return s;
    return transaction.commit();
}

Status UserDatabase::delete_user(std::string_view address) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    auto statement = database_.prepare("DELETE FROM users WHERE localpart = ?1 AND domain = ?2");
    if (!statement) return make_error(statement.error());
    if (Status s = statement->bind(1, split->localpart).bind(2, split->domain).run(); !s) return s;
    if (database_.changes() == 0) return make_error(user_error(*split));
    return {};
}

Status UserDatabase::update_user(std::string_view address, std::string_view sql_set,
                                 const std::function<void(sqlite::Statement&)>& bind) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    auto statement = database_.prepare(fmt::format("UPDATE users SET {} WHERE localpart = ?1 AND domain = ?2", sql_set));
    if (!statement) return make_error(statement.error());
    statement->bind(1, split->localpart).bind(2, split->domain);
    bind(*statement);
    if (Status s = statement->run(); !s) return s;
    if (database_.changes() == 0) return make_error(user_error(*split));
    return {};
}

Status UserDatabase::set_password(std::string_view address, std::string_view password_hash) {
    if (password_hash.empty()) return make_error("password hash is empty");
    if (Status s = check_secret("password hash", password_hash); !s) return s;
    return update_user(address, "password_hash = ?3", [&](sqlite::Statement& s) { s.bind(3, password_hash); });
}

Status UserDatabase::set_enabled(std::string_view address, bool enabled) {
    return update_user(address, "enabled = ?3",
                       [&](sqlite::Statement& s) { s.bind(3, int64_t{enabled ? 1 : 0}); });
}

Status UserDatabase::set_quota(std::string_view address, uint64_t quota_bytes) {
    if (Status s = check_quota(quota_bytes); !s) return s;
    return update_user(address, "quota_bytes = ?3",
                       [&](sqlite::Statement& s) { s.bind(3, static_cast<int64_t>(quota_bytes)); });
}

Status UserDatabase::set_apop_secret(std::string_view address, std::optional<std::string_view> secret) {
    if (secret) {
        if (Status s = check_apop_secret(*secret); !s) return s;
    }
    return update_user(address, "apop_secret = ?3", [&](sqlite::Statement& s) {
        if (secret)
            s.bind(3, *secret);
        else
            s.bind(3, nullptr);
    });
}

Result<std::optional<User>> UserDatabase::find_split_user(const SplitAddress& address) {
    auto query = database_.prepare(
        fmt::format("SELECT {} FROM users WHERE localpart = ?1 AND domain = ?2", user_columns));
    if (!query) return make_error(query.error());
    query->bind(1, address.localpart).bind(2, address.domain);
    auto row = query->step();
    if (!row) return make_error(row.error());
    if (!*row) return std::optional<User>();
    return std::optional<User>(read_user(*query));
}

Result<std::optional<User>> UserDatabase::find_user(std::string_view address) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    return find_split_user(*split);
}

Result<std::vector<User>> UserDatabase::list_users(std::optional<std::string_view> domain) {
    std::string sql = fmt::format("SELECT {} FROM users", user_columns);
    std::string wanted;
    if (domain) {
        auto normalized = normalized_domain(*domain);
        if (!normalized) return make_error(normalized.error());
        wanted = *normalized;
        auto exists = domain_exists(wanted);
        if (!exists) return make_error(exists.error());
        if (!*exists) return make_error(domain_error(wanted));
        sql += " WHERE domain = ?1";
    }
    sql += " ORDER BY domain, localpart";
    auto query = database_.prepare(sql);
    if (!query) return make_error(query.error());
    if (domain) query->bind(1, wanted);
    std::vector<User> users;
    for (;;) {
        auto row = query->step();
        if (!row) return make_error(row.error());
        if (!*row) break;
        users.push_back(read_user(*query));
    }
    return users;
}

// ---- aliases ----

Status UserDatabase::add_alias(std::string_view address, std::string_view target) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    auto stored_target = normalized_target(target);
    if (!stored_target) return make_error(stored_target.error());
    std::string key = split->localpart + "@" + split->domain;
    // A target equal to the address itself is allowed: Postfix's "keep a
    // copy" idiom (bob: bob, bob@elsewhere), see resolve().

    sqlite::Transaction transaction(database_);
    if (!transaction.begin_status()) return transaction.begin_status();
    auto exists = domain_exists(split->domain);
    if (!exists) return make_error(exists.error());
    if (!*exists) return make_error(domain_error(split->domain));
    auto duplicate = database_.prepare("SELECT 1 FROM aliases WHERE address = ?1 AND target = ?2");
    if (!duplicate) return make_error(duplicate.error());
    auto found = duplicate->bind(1, key).bind(2, *stored_target).step();
    if (!found) return make_error(found.error());
    if (*found)
        return make_error(fmt::format("alias {} -> {} already exists", key, log::printable(*stored_target, 300)));
    duplicate->reset();
    auto insert = database_.prepare("INSERT INTO aliases (address, target) VALUES (?1, ?2)");
    if (!insert) return make_error(insert.error());
    if (Status s = insert->bind(1, key).bind(2, *stored_target).run(); !s) return s;
    return transaction.commit();
}

Status UserDatabase::delete_alias(std::string_view address, std::optional<std::string_view> target) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    std::string key = split->localpart + "@" + split->domain;
    if (!target) {
        auto statement = database_.prepare("DELETE FROM aliases WHERE address = ?1");
        if (!statement) return make_error(statement.error());
        if (Status s = statement->bind(1, key).run(); !s) return s;
        if (database_.changes() == 0) return make_error(fmt::format("alias {} does not exist", key));
        return {};
    }
    auto stored_target = normalized_target(*target);
    if (!stored_target) return make_error(stored_target.error());
    auto statement = database_.prepare("DELETE FROM aliases WHERE address = ?1 AND target = ?2");
    if (!statement) return make_error(statement.error());
    if (Status s = statement->bind(1, key).bind(2, *stored_target).run(); !s) return s;
    if (database_.changes() == 0)
        return make_error(fmt::format("alias {} -> {} does not exist", key, log::printable(*stored_target, 300)));
    return {};
}

Result<std::vector<std::pair<std::string, std::vector<std::string>>>> UserDatabase::list_aliases() {
    auto query = database_.prepare("SELECT address, target FROM aliases ORDER BY address, id");
    if (!query) return make_error(query.error());
    std::vector<std::pair<std::string, std::vector<std::string>>> aliases;
    for (;;) {
        auto row = query->step();
        if (!row) return make_error(row.error());
        if (!*row) break;
        std::string address = query->column_text(0);
        if (aliases.empty() || aliases.back().first != address) aliases.emplace_back(std::move(address), std::vector<std::string>());
        aliases.back().second.push_back(query->column_text(1));
    }
    return aliases;
}

void UserDatabase::set_static_aliases(std::map<std::string, std::vector<std::string>> aliases) {
    // Keys compare like the database's: lowercased.
    static_aliases_.clear();
    for (auto& [name, targets] : aliases) {
        std::vector<std::string>& merged = static_aliases_[lowercase(name)];
        for (std::string& target : targets) merged.push_back(std::move(target));
    }
}

// ---- resolution ----

Result<std::vector<std::string>> UserDatabase::alias_targets(const SplitAddress& address) {
    std::string key = address.localpart + "@" + address.domain;
    std::vector<std::string> targets;
    auto query = database_.prepare("SELECT target FROM aliases WHERE address = ?1 ORDER BY id");
    if (!query) return make_error(query.error());
    query->bind(1, key);
    for (;;) {
        auto row = query->step();
        if (!row) return make_error(row.error());
        if (!*row) break;
        targets.push_back(query->column_text(0));
    }
    // The static file: "name@domain" for that address, bare "name" for that
    // local part in every local domain. Bare targets there mean "that name
    // in the domain being expanded" (root: bob → bob@<this domain>).
    auto add_static = [&](const std::string& static_key) {
        auto found = static_aliases_.find(static_key);
        if (found == static_aliases_.end()) return;
        for (const std::string& target : found->second) {
            bool bare = !target.empty() && target.front() != '|' && target.front() != '/' &&
                        target.find('@') == std::string::npos;
            targets.push_back(bare ? lowercase(target) + "@" + address.domain : target);
        }
    };
    add_static(key);
    add_static(address.localpart);
    return targets;
}

Result<Resolution> UserDatabase::resolve(std::string_view address) {
    auto split = split_address(address);
    if (!split) return make_error(split.error());
    auto local = domain_exists(split->domain);
    if (!local) return make_error(local.error());
    Resolution resolution;
    if (!*local) {
        resolution.kind = Resolution::remote;
        return resolution;
    }

    auto top_targets = alias_targets(*split);
    if (!top_targets) return make_error(top_targets.error());
    if (top_targets->empty()) {
        auto user = find_split_user(*split);
        if (!user) return make_error(user.error());
        if (*user && (*user)->enabled) {
            resolution.kind = Resolution::local_user;
            resolution.user = std::move(*user);
            return resolution;
        }
        // Subaddressing (RFC 5233 style, Postfix recipient_delimiter = +):
        // user+tag@domain is user@domain unless an alias or user claims the
        // whole name first.
        size_t plus = split->localpart.find('+');
        if (plus != std::string::npos && plus > 0)
            return resolve(split->localpart.substr(0, plus) + "@" + split->domain);
        resolution.kind = Resolution::unknown_local;
        return resolution;
    }

    // Depth-first, keeping the order the targets were written in. `seen`
    // holds every address already expanded or emitted: a loop (a -> b -> a)
    // and a diamond (a -> b, c; b, c -> d) both end with each target once.
    std::string top = split->localpart + "@" + split->domain;
    std::set<std::string> seen{top};
    std::vector<std::string>& out = resolution.targets;
    resolution.kind = Resolution::alias;

    auto emit = [&](const std::string& target) -> Status {
        if (std::find(out.begin(), out.end(), target) != out.end()) return {};
        if (out.size() >= max_alias_targets)
            return make_error(fmt::format("alias {} expands to more than {} targets", top, max_alias_targets));
        out.push_back(target);
        return {};
    };
    std::function<Status(const std::string&, std::vector<std::string>, int)> expand =
        [&](const std::string& current, std::vector<std::string> targets, int depth) -> Status {
        if (depth > max_alias_depth)
            return make_error(fmt::format("alias {} nests deeper than {} levels", top, max_alias_depth));
        for (const std::string& raw : targets) {
            auto kind = classify_target(raw);
            if (!kind) {
                // Only the static file can hold a bad target (the database
                // validates on insert); skip it rather than lose the rest.
                log::warning("alias={} bad_target={} error={}", current, log::printable(raw), kind.error());
                continue;
            }
            if (*kind != TargetKind::address) {
                // |command and /file are final.
                if (!seen.insert(raw).second) continue;
                if (Status s = emit(raw); !s) return s;
                continue;
            }
            auto parts = split_address(raw);
            std::string target = parts->localpart + "@" + parts->domain;
            // Postfix-style self reference ("bob: bob, bob@elsewhere"): the
            // address itself is delivered, not expanded again.
            if (target == current) {
                if (Status s = emit(target); !s) return s;
                continue;
            }
            if (!seen.insert(target).second) continue;
            auto is_local = domain_exists(parts->domain);
            if (!is_local) return make_error(is_local.error());
            if (*is_local) {
                auto more = alias_targets(*parts);
                if (!more) return make_error(more.error());
                if (!more->empty()) {
                    if (Status s = expand(target, std::move(*more), depth + 1); !s) return s;
                    continue;
                }
            }
            // A remote address or a local mailbox: final.
            if (Status s = emit(target); !s) return s;
        }
        return {};
    };
    if (Status s = expand(top, std::move(*top_targets), 1); !s) return make_error(s.error());
    if (out.empty()) return make_error(fmt::format("alias {} expands to no target (alias loop?)", top));
    return resolution;
}

}  // namespace facteur::directory
