// The admin operations on the user database: local and remote backends, the
// one frame encoding both sides share, and authd's serve().
#include "libmail/directory_admin.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>

#include <fmt/format.h>

#include "libmail/system.hpp"
#include "libmail/secret.hpp"

namespace facteur::directory_admin {
namespace {

using namespace std::string_view_literals;

constexpr size_t kMaxHashLength = 512;

// A crypt(3) or {SCHEME} hash is printable ASCII; anything else reaching us
// is a caller bug or a hostile frame, and must not land in the database.
Status check_password_hash(std::string_view hash) {
    if (hash.empty()) return make_error("empty password hash");
    if (hash.size() > kMaxHashLength) return make_error("password hash too long");
    for (char c : hash) {
        auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte >= 0x7f) return make_error("password hash contains invalid characters");
    }
    return {};
}

// The APOP secret travels in clear (it is stored so); the copy in a request
// frame is wiped once sent, like the CLI's own buffer.
void wipe_values(ipc::Frame& frame) {
    for (auto& attribute : frame.attributes)
        secret::wipe(attribute.second);
}

std::string flag(bool value) { return value ? "1" : "0"; }

Result<bool> parse_flag(std::string_view name, std::string_view text) {
    if (text == "1") return true;
    if (text == "0") return false;
    return make_error(fmt::format("attribute {} must be 0 or 1", name));
}

Result<uint64_t> parse_unsigned(std::string_view name, std::string_view text) {
    uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size())
        return make_error(fmt::format("attribute {} must be a decimal number", name));
    return value;
}

// --- local: straight to the database ---------------------------------------

class LocalAdmin final : public Admin {
public:
    explicit LocalAdmin(directory::UserDatabase& database) : database_(database) {}

    Status add_domain(std::string_view name) override { return database_.add_domain(name); }
    Status delete_domain(std::string_view name, bool force) override { return database_.delete_domain(name, force); }
    Result<std::vector<std::string>> list_domains() override { return database_.list_domains(); }

    Status add_user(std::string_view address, std::string_view password_hash,
                    const directory::UserOptions& options) override {
        if (Status s = check_password_hash(password_hash); !s) return s;
        return database_.add_user(address, password_hash, options);
    }
    Status delete_user(std::string_view address) override { return database_.delete_user(address); }
    Status set_password(std::string_view address, std::string_view password_hash) override {
        if (Status s = check_password_hash(password_hash); !s) return s;
        return database_.set_password(address, password_hash);
    }
    Status set_enabled(std::string_view address, bool enabled) override {
        return database_.set_enabled(address, enabled);
    }
    Status set_quota(std::string_view address, uint64_t quota_bytes) override {
        return database_.set_quota(address, quota_bytes);
    }
    Status set_apop_secret(std::string_view address, std::optional<std::string_view> secret) override {
        return database_.set_apop_secret(address, secret);
    }
    Result<std::vector<UserSummary>> list_users(std::optional<std::string_view> domain) override {
        auto users = database_.list_users(domain);
        if (!users) return make_error(users.error());
        std::vector<UserSummary> summaries;
        summaries.reserve(users->size());
        for (const directory::User& user : *users)
            summaries.push_back({user.address(), user.mailbox_format, user.quota_bytes, user.enabled});
        return summaries;
    }

    Status add_alias(std::string_view address, std::string_view target) override {
        return database_.add_alias(address, target);
    }
    Status delete_alias(std::string_view address, std::optional<std::string_view> target) override {
        return database_.delete_alias(address, target);
    }
    Result<AliasList> list_aliases() override { return database_.list_aliases(); }

private:
    directory::UserDatabase& database_;
};

// --- remote: one frame per call to authd ------------------------------------

class RemoteAdmin final : public Admin {
public:
    explicit RemoteAdmin(std::string socket_path) : socket_path_(std::move(socket_path)) {}

    Status add_domain(std::string_view name) override { return status(request::add_domain(name)); }
    Status delete_domain(std::string_view name, bool force) override {
        return status(request::delete_domain(name, force));
    }
    Result<std::vector<std::string>> list_domains() override {
        auto answer = call(request::list_domains());
        if (!answer) return make_error(answer.error());
        return reply::domains(*answer);
    }

    Status add_user(std::string_view address, std::string_view password_hash,
                    const directory::UserOptions& options) override {
        ipc::Frame frame = request::add_user(address, password_hash, options);
        Status result = status(frame);
        if (options.apop_secret) wipe_values(frame);
        return result;
    }
    Status delete_user(std::string_view address) override { return status(request::delete_user(address)); }
    Status set_password(std::string_view address, std::string_view password_hash) override {
        return status(request::set_password(address, password_hash));
    }
    Status set_enabled(std::string_view address, bool enabled) override {
        return status(request::set_enabled(address, enabled));
    }
    Status set_quota(std::string_view address, uint64_t quota_bytes) override {
        return status(request::set_quota(address, quota_bytes));
    }
    Status set_apop_secret(std::string_view address, std::optional<std::string_view> secret) override {
        ipc::Frame frame = request::set_apop_secret(address, secret);
        Status result = status(frame);
        wipe_values(frame);
        return result;
    }
    Result<std::vector<UserSummary>> list_users(std::optional<std::string_view> domain) override {
        auto answer = call(request::list_users(domain));
        if (!answer) return make_error(answer.error());
        return reply::users(*answer);
    }

    Status add_alias(std::string_view address, std::string_view target) override {
        return status(request::add_alias(address, target));
    }
    Status delete_alias(std::string_view address, std::optional<std::string_view> target) override {
        return status(request::delete_alias(address, target));
    }
    Result<AliasList> list_aliases() override {
        auto answer = call(request::list_aliases());
        if (!answer) return make_error(answer.error());
        return reply::aliases(*answer);
    }

private:
    Result<ipc::Frame> call(const ipc::Frame& frame) {
        auto client = ipc::Client::connect(socket_path_, std::chrono::seconds(30));
        if (!client) return make_error(fmt::format("cannot reach authd at {}: {}", socket_path_, client.error()));
        auto answer = client->call(frame);
        if (!answer) return make_error(fmt::format("authd admin socket {}: {}", socket_path_, answer.error()));
        return answer;
    }
    Status status(const ipc::Frame& frame) {
        auto answer = call(frame);
        if (!answer) return make_error(answer.error());
        return reply::status(*answer);
    }

    std::string socket_path_;
};

// --- serve: authd's side -----------------------------------------------------

using ipc::error_reply;
using ipc::ok_reply;


// A request attribute the op cannot do without.
Result<std::string_view> required(const ipc::Frame& request, std::string_view name) {
    auto value = request.get(name);
    if (!value) return make_error(fmt::format("missing attribute {}", name));
    return *value;
}

ipc::Frame dispatch(Admin& admin, std::string_view op, const ipc::Frame& request) {
    if (op == "domain_add") {
        auto domain = required(request, "domain");
        if (!domain) return error_reply(domain.error());
        return ipc::status_reply(admin.add_domain(*domain));
    }
    if (op == "domain_del") {
        auto domain = required(request, "domain");
        if (!domain) return error_reply(domain.error());
        bool force = false;
        if (auto text = request.get("force")) {
            auto parsed = parse_flag("force", *text);
            if (!parsed) return error_reply(parsed.error());
            force = *parsed;
        }
        return ipc::status_reply(admin.delete_domain(*domain, force));
    }
    if (op == "domain_list") {
        auto domains = admin.list_domains();
        if (!domains) return error_reply(domains.error());
        ipc::Frame frame = ok_reply();
        for (std::string& domain : *domains) frame.add("domain", std::move(domain));
        return frame;
    }
    if (op == "user_add") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        auto hash = required(request, "password_hash");
        if (!hash) return error_reply(hash.error());
        directory::UserOptions options;
        if (auto text = request.get("quota")) {
            auto quota = parse_unsigned("quota", *text);
            if (!quota) return error_reply(quota.error());
            options.quota_bytes = *quota;
        }
        if (auto format = request.get("format")) options.mailbox_format = std::string(*format);
        if (auto text = request.get("enabled")) {
            auto enabled = parse_flag("enabled", *text);
            if (!enabled) return error_reply(enabled.error());
            options.enabled = *enabled;
        }
        if (auto secret = request.get("apop_secret")) options.apop_secret = std::string(*secret);
        return ipc::status_reply(admin.add_user(*address, *hash, options));
    }
    if (op == "user_del") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        return ipc::status_reply(admin.delete_user(*address));
    }
    if (op == "user_passwd") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        auto hash = required(request, "password_hash");
        if (!hash) return error_reply(hash.error());
        return ipc::status_reply(admin.set_password(*address, *hash));
    }
    if (op == "user_enable") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        auto text = required(request, "enabled");
        if (!text) return error_reply(text.error());
        auto enabled = parse_flag("enabled", *text);
        if (!enabled) return error_reply(enabled.error());
        return ipc::status_reply(admin.set_enabled(*address, *enabled));
    }
    if (op == "user_quota") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        auto text = required(request, "quota");
        if (!text) return error_reply(text.error());
        auto quota = parse_unsigned("quota", *text);
        if (!quota) return error_reply(quota.error());
        return ipc::status_reply(admin.set_quota(*address, *quota));
    }
    if (op == "user_apop") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        return ipc::status_reply(admin.set_apop_secret(*address, request.get("apop_secret")));
    }
    if (op == "user_list") {
        auto users = admin.list_users(request.get("domain"));
        if (!users) return error_reply(users.error());
        ipc::Frame frame = ok_reply();
        for (UserSummary& user : *users) {
            frame.add("address", std::move(user.address));
            frame.add("format", std::move(user.mailbox_format));
            frame.add("quota", std::to_string(user.quota_bytes));
            frame.add("enabled", flag(user.enabled));
        }
        return frame;
    }
    if (op == "alias_add") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        auto target = required(request, "target");
        if (!target) return error_reply(target.error());
        return ipc::status_reply(admin.add_alias(*address, *target));
    }
    if (op == "alias_del") {
        auto address = required(request, "address");
        if (!address) return error_reply(address.error());
        return ipc::status_reply(admin.delete_alias(*address, request.get("target")));
    }
    if (op == "alias_list") {
        auto aliases = admin.list_aliases();
        if (!aliases) return error_reply(aliases.error());
        ipc::Frame frame = ok_reply();
        for (auto& [address, targets] : *aliases) {
            frame.add("address", std::move(address));
            for (std::string& target : targets) frame.add("target", std::move(target));
        }
        return frame;
    }
    return error_reply(fmt::format("unknown op '{}'", op));
}

ipc::Frame with_op(std::string_view op) {
    ipc::Frame frame;
    frame.add("op", std::string(op));
    return frame;
}

}  // namespace

std::unique_ptr<Admin> local(directory::UserDatabase& database) { return std::make_unique<LocalAdmin>(database); }

std::unique_ptr<Admin> remote(const std::string& admin_socket_path) {
    return std::make_unique<RemoteAdmin>(admin_socket_path);
}

ipc::Frame serve(directory::UserDatabase& database, const ipc::Frame& request) {
    auto op = request.get("op");
    if (!op) return error_reply("missing attribute op");
    LocalAdmin admin(database);
    return dispatch(admin, *op, request);
}

namespace request {

ipc::Frame add_domain(std::string_view name) {
    ipc::Frame frame = with_op("domain_add");
    frame.add("domain", std::string(name));
    return frame;
}

ipc::Frame delete_domain(std::string_view name, bool force) {
    ipc::Frame frame = with_op("domain_del");
    frame.add("domain", std::string(name));
    frame.add("force", flag(force));
    return frame;
}

ipc::Frame list_domains() { return with_op("domain_list"); }

ipc::Frame add_user(std::string_view address, std::string_view password_hash, const directory::UserOptions& options) {
    ipc::Frame frame = with_op("user_add");
    frame.add("address", std::string(address));
    frame.add("password_hash", std::string(password_hash));
    frame.add("quota", std::to_string(options.quota_bytes));
    frame.add("format", options.mailbox_format);
    frame.add("enabled", flag(options.enabled));
    if (options.apop_secret) frame.add("apop_secret", *options.apop_secret);
    return frame;
}

ipc::Frame delete_user(std::string_view address) {
    ipc::Frame frame = with_op("user_del");
    frame.add("address", std::string(address));
    return frame;
}

ipc::Frame set_password(std::string_view address, std::string_view password_hash) {
    ipc::Frame frame = with_op("user_passwd");
    frame.add("address", std::string(address));
    frame.add("password_hash", std::string(password_hash));
    return frame;
}

ipc::Frame set_enabled(std::string_view address, bool enabled) {
    ipc::Frame frame = with_op("user_enable");
    frame.add("address", std::string(address));
    frame.add("enabled", flag(enabled));
    return frame;
}

ipc::Frame set_quota(std::string_view address, uint64_t quota_bytes) {
    ipc::Frame frame = with_op("user_quota");
    frame.add("address", std::string(address));
    frame.add("quota", std::to_string(quota_bytes));
    return frame;
}

ipc::Frame set_apop_secret(std::string_view address, std::optional<std::string_view> secret) {
    ipc::Frame frame = with_op("user_apop");
    frame.add("address", std::string(address));
    if (secret) frame.add("apop_secret", std::string(*secret));
    return frame;
}

ipc::Frame list_users(std::optional<std::string_view> domain) {
    ipc::Frame frame = with_op("user_list");
    if (domain) frame.add("domain", std::string(*domain));
    return frame;
}

ipc::Frame add_alias(std::string_view address, std::string_view target) {
    ipc::Frame frame = with_op("alias_add");
    frame.add("address", std::string(address));
    frame.add("target", std::string(target));
    return frame;
}

ipc::Frame delete_alias(std::string_view address, std::optional<std::string_view> target) {
    ipc::Frame frame = with_op("alias_del");
    frame.add("address", std::string(address));
    if (target) frame.add("target", std::string(*target));
    return frame;
}

ipc::Frame list_aliases() { return with_op("alias_list"); }

}  // namespace request

namespace reply {

Status status(const ipc::Frame& reply) { return ipc::reply_status(reply, "authd"); }

Result<std::vector<std::string>> domains(const ipc::Frame& reply) {
    if (Status s = status(reply); !s) return make_error(s.error());
    std::vector<std::string> names;
    for (std::string_view name : reply.get_all("domain")) names.emplace_back(name);
    return names;
}

Result<std::vector<UserSummary>> users(const ipc::Frame& reply) {
    if (Status s = status(reply); !s) return make_error(s.error());
    // Groups of address, format, quota, enabled, in that order.
    std::vector<UserSummary> result;
    int expected = 0;  // 0 = address next, 1 = format, 2 = quota, 3 = enabled
    for (const auto& [name, value] : reply.attributes) {
        if (name == "status") continue;
        static constexpr std::string_view order[] = {"address", "format", "quota", "enabled"};
        if (name != order[expected])
            return make_error(fmt::format("malformed user list from authd: unexpected attribute '{}'", name));
        switch (expected) {
        case 0: result.push_back({value, {}, 0, true}); break;
        case 1: result.back().mailbox_format = value; break;
        case 2: {
            auto quota = parse_unsigned("quota", value);
            if (!quota) return make_error("malformed user list from authd: " + quota.error());
            result.back().quota_bytes = *quota;
            break;
        }
        case 3: {
            auto enabled = parse_flag("enabled", value);
            if (!enabled) return make_error("malformed user list from authd: " + enabled.error());
            result.back().enabled = *enabled;
            break;
        }
        }
        expected = (expected + 1) % 4;
    }
    if (expected != 0) return make_error("malformed user list from authd: truncated entry");
    return result;
}

Result<AliasList> aliases(const ipc::Frame& reply) {
    if (Status s = status(reply); !s) return make_error(s.error());
    AliasList result;
    for (const auto& [name, value] : reply.attributes) {
        if (name == "status") continue;
        if (name == "address") {
            result.emplace_back(value, std::vector<std::string>{});
        } else if (name == "target" && !result.empty()) {
            result.back().second.push_back(value);
        } else {
            return make_error(fmt::format("malformed alias list from authd: unexpected attribute '{}'", name));
        }
    }
    return result;
}

}  // namespace reply

Result<directory::UserDatabase> open_local_database(const std::string& path, const std::string& owner) {
    std::optional<system::Account> account;
    if (system::running_as_root()) {
        auto found = system::find_account(owner);
        if (!found) return make_error(fmt::format("auth_owner = {}: {}", owner, found.error()));
        account = *found;
    }
    // Readable by authd alone (DESIGN §1), like master's prepare_directories.
    if (Status s = system::ensure_directory(system::parent_directory(path), 0700, account); !s)
        return make_error(s.error());
    auto database = directory::UserDatabase::open(path, true);
    if (!database) return make_error(database.error());
    if (account) {
        // Root just created or opened the file (and SQLite its WAL files):
        // hand them to the owner so authd, dropped to it, can open them.
        for (const char* suffix : {"", "-wal", "-shm"}) {
            std::string file = path + suffix;
            struct stat info {};
            if (lstat(file.c_str(), &info) != 0) continue;
            if (!S_ISREG(info.st_mode)) return make_error(fmt::format("{} is not a regular file", file));
            if ((info.st_uid != account->uid || info.st_gid != account->gid) &&
                chown(file.c_str(), account->uid, account->gid) != 0)
                return make_error(fmt::format("cannot chown {}: {}", file, system::errno_text(errno)));
            if (chmod(file.c_str(), 0600) != 0)
                return make_error(fmt::format("cannot chmod {}: {}", file, system::errno_text(errno)));
        }
    }
    return database;
}

}  // namespace facteur::directory_admin
