// `facteur domain add|del|list`: the mail domains this host receives for.
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli/admin_access.hpp"
#include "cli/commands.hpp"

namespace facteur::cli {
namespace {

struct DomainArguments {
    std::string name;
    bool force = false;
};

}  // namespace

void register_domain_commands(CLI::App& app, Context& context) {
    auto arguments = std::make_shared<DomainArguments>();
    CLI::App* domain = app.add_subcommand("domain", "Manage the local mail domains");
    domain->require_subcommand(1);

    CLI::App* add = domain->add_subcommand("add", "Add a local domain");
    add->add_option("DOMAIN", arguments->name, "Domain name, e.g. example.org")->required();
    add->callback([&context, arguments] {
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            if (Status s = admin.add_domain(arguments->name); !s) return fail(s.error());
            report(fmt::format("domain {} added", arguments->name));
            return kExitOk;
        });
    });

    CLI::App* del = domain->add_subcommand("del", "Delete a local domain");
    del->alias("delete");
    del->add_option("DOMAIN", arguments->name, "Domain name")->required();
    del->add_flag("-f,--force", arguments->force, "Also delete the domain's users and aliases");
    del->callback([&context, arguments] {
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            if (Status s = admin.delete_domain(arguments->name, arguments->force); !s) return fail(s.error());
            report(fmt::format("domain {} deleted", arguments->name));
            return kExitOk;
        });
    });

    CLI::App* list = domain->add_subcommand("list", "List the local domains");
    list->callback([&context] {
        context.exit_code = with_admin(context, [&](directory_admin::Admin& admin) {
            auto domains = admin.list_domains();
            if (!domains) return fail(domains.error());
            for (const std::string& name : *domains) fmt::print("{}\n", name);
            return kExitOk;
        });
    });
}

}  // namespace facteur::cli
