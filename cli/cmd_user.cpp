// `facteur user add|del|passwd|apop|enable|disable|quota|list`: mailbox
// accounts. Passwords and APOP secrets never come from the command line (they
// would show in ps(1) and shell history): only the terminal or stdin.
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "cli/admin_access.hpp"
#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "cli/password_input.hpp"

namespace facteur::cli {
namespace {

struct UserArguments {
    std::string address;
    bool password_stdin = false;
    std::string quota;
    std::string format = "maildir";
    bool disabled = false;
    bool apop = false;          // user add: also set an APOP secret
    bool secret_stdin = false;  // user apop: read it from stdin
    bool clear = false;         // user apop: remove it
    std::string domain;
};

// Shown by `user add --help` and `user apop --help`.
constexpr const char* kApopNote =
    "APOP (RFC 1939 section 7) needs the secret itself, so it is stored in clear\n"
    "text in the user database. That is why it is separate from the password\n"
    "(stored hashed), optional, and should not be the password. Users without\n"
    "one cannot log in with APOP.";

// "1G", "500M", "0" or "unlimited" (= 0, no quota).
Result<uint64_t> parse_quota(std::string_view text) {
    if (text == "unlimited" || text == "none") return uint64_t{0};
    auto bytes = config::parse_size(text);
    if (!bytes) return make_error(fmt::format("--quota: {}", bytes.error()));
    return bytes;
}

int add_user(const Context& context, const UserArguments& arguments) {
    directory::UserOptions options;
    options.mailbox_format = arguments.format;
    options.enabled = !arguments.disabled;
    if (!arguments.quota.empty()) {
        auto quota = parse_quota(arguments.quota);
        if (!quota) return fail(quota.error());
        options.quota_bytes = *quota;
    }
    return with_admin(context, [&](directory_admin::Admin& admin) {
        Secret password;
        if (Status s = read_new_password(arguments.password_stdin, arguments.address, password); !s)
            return fail(s.error());
        if (arguments.apop) {
            // With --password-stdin the secret is the line after the password
            // (read_password_line consumes nothing past its own line).
            SecretKind kind = kApopSecret;
            kind.stdin_option = "--password-stdin";
            Secret apop;
            if (Status s = read_new_apop_secret(arguments.password_stdin, arguments.address, apop, kind); !s)
                return fail(s.error());
            // A shared value would put the password in clear text in the database.
            if (apop.view().size() == password.view().size() &&
                CRYPTO_memcmp(apop.view().data(), password.view().data(), apop.view().size()) == 0)
                return fail("the APOP secret must differ from the password: it is stored in clear text");
            options.apop_secret = std::string(apop.view());
        }
        auto hash = hash_new_password(password);
        Status added = hash ? admin.add_user(arguments.address, *hash, options) : Status(make_error(hash.error()));
        if (options.apop_secret) OPENSSL_cleanse(options.apop_secret->data(), options.apop_secret->size());
        if (!added) return fail(added.error());
        report(fmt::format("user {} added{}", arguments.address, arguments.apop ? " with an APOP secret" : ""));
        return kExitOk;
    });
}

int set_apop_secret(const Context& context, const UserArguments& arguments) {
    return with_admin(context, [&](directory_admin::Admin& admin) {
        if (arguments.clear) {
            if (Status s = admin.set_apop_secret(arguments.address, std::nullopt); !s) return fail(s.error());
            report(fmt::format("APOP secret of {} cleared", arguments.address));
            return kExitOk;
        }
        Secret secret;
        if (Status s = read_new_apop_secret(arguments.secret_stdin, arguments.address, secret); !s)
            return fail(s.error());
        if (Status s = admin.set_apop_secret(arguments.address, secret.view()); !s) return fail(s.error());
        report(fmt::format("APOP secret of {} set", arguments.address));
        return kExitOk;
    });
}

int change_password(const Context& context, const UserArguments& arguments) {
    return with_admin(context, [&](directory_admin::Admin& admin) {
        auto hash = read_new_password_hash(arguments.password_stdin, arguments.address);
        if (!hash) return fail(hash.error());
        if (Status s = admin.set_password(arguments.address, *hash); !s) return fail(s.error());
        report(fmt::format("password of {} changed", arguments.address));
        return kExitOk;
    });
}

int list_users(const Context& context, const UserArguments& arguments) {
    return with_admin(context, [&](directory_admin::Admin& admin) {
        std::optional<std::string_view> domain;
        if (!arguments.domain.empty()) domain = arguments.domain;
        auto users = admin.list_users(domain);
        if (!users) return fail(users.error());
        std::vector<std::vector<std::string>> rows{{"ADDRESS", "FORMAT", "QUOTA", "ENABLED"}};
        for (const auto& user : *users)
            rows.push_back({user.address, user.mailbox_format, format_quota(user.quota_bytes),
                            user.enabled ? "yes" : "no"});
        fmt::print("{}", format_table(rows));
        return kExitOk;
    });
}

CLI::Option* address_argument(CLI::App* command, UserArguments& arguments) {
    return command->add_option("ADDRESS", arguments.address, "The user's address, e.g. bob@example.org")->required();
}

}  // namespace

void register_user_commands(CLI::App& app, Context& context) {
    auto arguments = std::make_shared<UserArguments>();
    CLI::App* user = app.add_subcommand("user", "Manage mailbox users");
    user->require_subcommand(1);

    CLI::App* add = user->add_subcommand("add", "Add a user (asks for the password)");
    address_argument(add, *arguments);
    add->add_flag("--password-stdin", arguments->password_stdin, "Read the password as one line from stdin");
    add->add_option("--quota", arguments->quota, "Mailbox quota, e.g. 500M or 1G (default: unlimited)")
        ->type_name("SIZE");
    add->add_option("--format", arguments->format, "Mailbox format (default: maildir)")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"maildir", "mbox"}));
    add->add_flag("--disabled", arguments->disabled, "Create the user disabled (cannot log in or receive mail)");
    add->add_flag("--apop", arguments->apop,
                  "Also set an APOP secret, asked after the password (with --password-stdin: the second line of "
                  "stdin); stored in clear text, see below");
    add->footer(kApopNote);
    add->callback([&context, arguments] { context.exit_code = add_user(context, *arguments); });

    CLI::App* del = user->add_subcommand("del", "Delete a user (the mailbox files are kept)");
    del->alias("delete");
    address_argument(del, *arguments);
    del->callback([&context, arguments] {
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            if (Status s = admin.delete_user(arguments->address); !s) return fail(s.error());
            report(fmt::format("user {} deleted", arguments->address));
            return kExitOk;
        });
    });

    CLI::App* passwd = user->add_subcommand("passwd", "Change a user's password");
    address_argument(passwd, *arguments);
    passwd->add_flag("--password-stdin", arguments->password_stdin, "Read the password as one line from stdin");
    passwd->callback([&context, arguments] { context.exit_code = change_password(context, *arguments); });

    CLI::App* apop = user->add_subcommand(
        "apop", "Set (asks for it) or clear a user's APOP secret, stored in clear text");
    address_argument(apop, *arguments);
    CLI::Option* secret_stdin =
        apop->add_flag("--secret-stdin", arguments->secret_stdin, "Read the APOP secret as one line from stdin");
    apop->add_flag("--clear", arguments->clear, "Remove the APOP secret: the user can no longer log in with APOP")
        ->excludes(secret_stdin);
    apop->footer(kApopNote);
    apop->callback([&context, arguments] { context.exit_code = set_apop_secret(context, *arguments); });

    for (bool enable : {true, false}) {
        CLI::App* toggle = user->add_subcommand(enable ? "enable" : "disable",
                                                enable ? "Let a disabled user log in and receive mail again"
                                                       : "Stop a user from logging in and receiving mail");
        address_argument(toggle, *arguments);
        toggle->callback([&context, arguments, enable] {
            context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
                if (Status s = admin.set_enabled(arguments->address, enable); !s) return fail(s.error());
                report(fmt::format("user {} {}", arguments->address, enable ? "enabled" : "disabled"));
                return kExitOk;
            });
        });
    }

    CLI::App* quota = user->add_subcommand("quota", "Set a user's mailbox quota");
    address_argument(quota, *arguments);
    quota->add_option("SIZE", arguments->quota, "e.g. 500M, 1G, or unlimited")->required();
    quota->callback([&context, arguments] {
        auto bytes = parse_quota(arguments->quota);
        if (!bytes) {
            context.exit_code = fail(bytes.error());
            return;
        }
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            if (Status s = admin.set_quota(arguments->address, *bytes); !s) return fail(s.error());
            report(fmt::format("quota of {} set to {}", arguments->address, format_quota(*bytes)));
            return kExitOk;
        });
    });

    CLI::App* list = user->add_subcommand("list", "List users, of one domain or all");
    list->add_option("DOMAIN", arguments->domain, "Only this domain's users");
    list->callback([&context, arguments] { context.exit_code = list_users(context, *arguments); });
}

}  // namespace facteur::cli
