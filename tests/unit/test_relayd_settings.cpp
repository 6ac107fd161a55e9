// relayd's tables (TLS policy, relay host credentials) and server lists
// built from DNS answers (RFC 5321 §5.1, RFC 7505).
#include <catch2/catch.hpp>

#include "relayd/scheduler.hpp"
#include "relayd/settings.hpp"

using namespace facteur;
using namespace facteur::relayd;

TEST_CASE("TLS policy table: exact beats parent, comments and blanks ignored", "[relayd]") {
    auto table = PolicyTable::parse("# policy\n\nexample.org verify\n.example.org encrypt\n  b.test   none # no TLS\n",
                                    "policy");
    REQUIRE(table);
    CHECK(table->size() == 3);
    CHECK(table->find("example.org") == TlsLevel::verify);
    CHECK(table->find("EXAMPLE.org.") == TlsLevel::verify);
    CHECK(table->find("mx.example.org") == TlsLevel::encrypt);
    CHECK(table->find("a.b.example.org") == TlsLevel::encrypt);
    CHECK(table->find("b.test") == TlsLevel::none);
    CHECK_FALSE(table->find("c.test"));
    CHECK_FALSE(table->find("notexample.org"));

    auto bad = PolicyTable::parse("ok.test may\nbad.test sometimes\n", "/etc/facteur/tls_policy");
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error(), Catch::Contains("/etc/facteur/tls_policy:2"));
    CHECK_FALSE(PolicyTable::parse("lonely.test\n", "p"));
    CHECK_FALSE(PolicyTable::parse("x.test may extra\n", "p"));
}

TEST_CASE("credential table: nexthop as written, then the bare host", "[relayd]") {
    auto table = CredentialTable::parse(
        "[smtp.example.net]:587 user@example.net:pa:ss word\nrelay.test bob:secret\n", "credentials");
    REQUIRE(table);
    auto one = table->find("[smtp.example.net]:587", "smtp.example.net");
    REQUIRE(one);
    CHECK(one->user == "user@example.net");
    CHECK(one->password == "pa:ss word");
    CHECK_FALSE(table->find("[smtp.example.net]:25", "smtp.example.net"));
    auto two = table->find("[relay.test]:2525", "relay.test");
    REQUIRE(two);
    CHECK(two->user == "bob");
    auto bad = CredentialTable::parse("host-without-secret\n", "credentials");
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error(), Catch::Contains("credentials:1"));
    CHECK_FALSE(CredentialTable::parse("host :nouser\n", "c"));
}

namespace {

dns::AddressAnswer found(std::vector<std::string> addresses) {
    dns::AddressAnswer answer;
    answer.status = dns::Status::ok;
    answer.addresses = std::move(addresses);
    return answer;
}

dns::MxAnswer mx(std::vector<dns::MxRecord> records) {
    dns::MxAnswer answer;
    answer.status = dns::Status::ok;
    answer.records = std::move(records);
    return answer;
}

}  // namespace

TEST_CASE("server list from MX records keeps preference order and every address", "[relayd]") {
    auto answer = mx({{10, "mx1.b.test"}, {20, "mx2.b.test"}});
    std::map<std::string, dns::AddressAnswer> addresses{
        {"mx1.b.test", found({"2001:db8:fac::2", "198.51.100.2"})}, {"mx2.b.test", found({"198.51.100.3"})}};
    ServerList list = servers_from_mx("b.test", answer, addresses, 25, "mx.a.test", 5);
    REQUIRE_FALSE(list.failure);
    REQUIRE(list.servers.size() == 3);
    CHECK(list.servers[0].description() == "mx1.b.test[2001:db8:fac::2]:25");
    CHECK(list.servers[1].address == "198.51.100.2");
    CHECK(list.servers[2].hostname == "mx2.b.test");

    SECTION("the address limit bounds the list") {
        CHECK(servers_from_mx("b.test", answer, addresses, 25, "mx.a.test", 2).servers.size() == 2);
    }
    SECTION("an MX host without addresses is skipped") {
        dns::AddressAnswer none;
        none.status = dns::Status::not_found;
        addresses["mx1.b.test"] = none;
        ServerList skipped = servers_from_mx("b.test", answer, addresses, 25, "mx.a.test", 5);
        REQUIRE(skipped.servers.size() == 1);
        CHECK(skipped.servers[0].hostname == "mx2.b.test");
    }
}

TEST_CASE("MX failures map to the right outcome and code", "[relayd]") {
    dns::MxAnswer nxdomain;
    nxdomain.status = dns::Status::not_found;
    ServerList a = servers_from_mx("nowhere.test", nxdomain, {}, 25, "mx.a.test", 5);
    REQUIRE(a.failure);
    CHECK(a.failure->outcome == delivery::Outcome::bounced);
    CHECK(a.failure->dsn == "5.1.2");
    CHECK_THAT(a.failure->reason, Catch::Contains("name=nowhere.test type=MX"));

    dns::MxAnswer servfail;
    servfail.status = dns::Status::temporary;
    servfail.error = "SERVFAIL";
    ServerList b = servers_from_mx("b.test", servfail, {}, 25, "mx.a.test", 5);
    REQUIRE(b.failure);
    CHECK(b.failure->outcome == delivery::Outcome::deferred);
    CHECK(b.failure->dsn == "4.4.3");

    dns::MxAnswer null_mx;
    null_mx.status = dns::Status::ok;
    null_mx.null_mx = true;
    ServerList c = servers_from_mx("null.test", null_mx, {}, 25, "mx.a.test", 5);
    REQUIRE(c.failure);
    CHECK(c.failure->outcome == delivery::Outcome::bounced);
    CHECK(c.failure->dsn == "5.1.10");
    CHECK_THAT(c.failure->reason, Catch::Contains("nullMX"));

    // All MX hosts unresolvable, one only temporarily: retry later.
    dns::AddressAnswer temporary;
    temporary.status = dns::Status::temporary;
    dns::AddressAnswer missing;
    missing.status = dns::Status::not_found;
    ServerList d = servers_from_mx("b.test", mx({{10, "mx1.b.test"}, {20, "mx2.b.test"}}),
                                   {{"mx1.b.test", missing}, {"mx2.b.test", temporary}}, 25, "mx.a.test", 5);
    REQUIRE(d.failure);
    CHECK(d.failure->outcome == delivery::Outcome::deferred);
    ServerList e = servers_from_mx("b.test", mx({{10, "mx1.b.test"}}), {{"mx1.b.test", missing}}, 25, "mx.a.test", 5);
    REQUIRE(e.failure);
    CHECK(e.failure->outcome == delivery::Outcome::bounced);
    CHECK(e.failure->dsn == "5.4.4");
}

TEST_CASE("no MX records: the domain's own addresses (implicit MX)", "[relayd]") {
    dns::MxAnswer nodata;
    nodata.status = dns::Status::no_data;
    ServerList list = servers_from_mx("plain.test", nodata, {{"plain.test", found({"198.51.100.9"})}}, 25, "mx.a.test", 5);
    REQUIRE_FALSE(list.failure);
    REQUIRE(list.servers.size() == 1);
    CHECK(list.servers[0].description() == "plain.test[198.51.100.9]:25");
    dns::AddressAnswer empty;
    empty.status = dns::Status::no_data;
    ServerList none = servers_from_mx("plain.test", nodata, {{"plain.test", empty}}, 25, "mx.a.test", 5);
    REQUIRE(none.failure);
    CHECK(none.failure->dsn == "5.4.4");
}

TEST_CASE("an MX list naming this host drops it and every worse MX (RFC 5321 5.1)", "[relayd]") {
    auto answer = mx({{10, "mx1.b.test"}, {20, "mx.a.test"}, {30, "mx3.b.test"}});
    std::map<std::string, dns::AddressAnswer> addresses{{"mx1.b.test", found({"198.51.100.2"})},
                                                        {"mx3.b.test", found({"198.51.100.4"})}};
    ServerList list = servers_from_mx("b.test", answer, addresses, 25, "mx.a.test", 5);
    REQUIRE(list.servers.size() == 1);
    CHECK(list.servers[0].hostname == "mx1.b.test");

    ServerList loop = servers_from_mx("a.test", mx({{10, "mx.a.test"}, {20, "backup.test"}}),
                                      {{"backup.test", found({"198.51.100.5"})}}, 25, "mx.a.test", 5);
    REQUIRE(loop.failure);
    CHECK(loop.failure->dsn == "5.4.6");
    CHECK_THAT(loop.failure->reason, Catch::Contains("loops back to myself"));
}
