// `facteur alias add|del|list`: addresses that forward to others (lists,
// role addresses); one address may have many targets.
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/admin_access.hpp"
#include "cli/commands.hpp"

namespace facteur::cli {
namespace {

struct AliasArguments {
    std::string address;
    std::vector<std::string> targets;
};

int add_aliases(const Context& context, const AliasArguments& arguments) {
    return with_admin(context, [&](directory_admin::Admin& admin) {
        int code = kExitOk;
        for (const std::string& target : arguments.targets) {
            if (Status s = admin.add_alias(arguments.address, target); !s) code = fail(s.error());
            else report(fmt::format("alias {} -> {} added", arguments.address, target));
        }
        return code;
    });
}

int delete_alias(const Context& context, const AliasArguments& arguments) {
    return with_admin(context, [&](directory_admin::Admin& admin) {
        std::optional<std::string_view> target;
        if (!arguments.targets.empty()) target = arguments.targets.front();
        if (Status s = admin.delete_alias(arguments.address, target); !s) return fail(s.error());
        report(target ? fmt::format("alias {} -> {} deleted", arguments.address, *target)
                      : fmt::format("alias {} deleted", arguments.address));
        return kExitOk;
    });
}

}  // namespace

void register_alias_commands(CLI::App& app, Context& context) {
    auto arguments = std::make_shared<AliasArguments>();
    CLI::App* alias = app.add_subcommand("alias", "Manage aliases (forwarding addresses)");
    alias->require_subcommand(1);

    CLI::App* add = alias->add_subcommand("add", "Add targets to an alias");
    add->add_option("ADDRESS", arguments->address, "The alias address, in a local domain")->required();
    add->add_option("TARGET", arguments->targets,
                    "Where mail goes: an address, \"|/path/to/command args\" or /path/to/file")
        ->required();
    add->callback([&context, arguments] { context.exit_code = add_aliases(context, *arguments); });

    CLI::App* del = alias->add_subcommand("del", "Delete an alias, or one of its targets");
    del->alias("delete");
    del->add_option("ADDRESS", arguments->address, "The alias address")->required();
    del->add_option("TARGET", arguments->targets, "Only this target (default: the whole alias)")->expected(0, 1);
    del->callback([&context, arguments] { context.exit_code = delete_alias(context, *arguments); });

    CLI::App* list = alias->add_subcommand("list", "List aliases in aliases(5) form");
    list->callback([&context] {
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            auto aliases = admin.list_aliases();
            if (!aliases) return fail(aliases.error());
            for (const auto& [address, targets] : *aliases) {
                std::string line = address + ":";
                for (size_t i = 0; i < targets.size(); ++i) {
                    // Targets with spaces (pipe commands) are quoted, as aliases(5) reads them.
                    bool quote = targets[i].find_first_of(" \t,") != std::string::npos;
                    line += fmt::format("{}{}", i == 0 ? " " : ", ", quote ? "\"" + targets[i] + "\"" : targets[i]);
                }
                fmt::print("{}\n", line);
            }
            return kExitOk;
        });
    });
}

}  // namespace facteur::cli
