// qmgr's transport table (transport_maps, man transport(5)): transports,
// pattern precedence and refusal of bad lines with file:line.
#include <catch2/catch.hpp>

#include <fstream>

#include "qmgr/transport_table.hpp"
#include "test_support.hpp"

using namespace facteur;
using namespace facteur::qmgr;

TEST_CASE("transport: each kind of route") {
    auto local = parse_transport("local");
    REQUIRE(local.ok());
    CHECK(local->kind == Transport::Kind::local);
    CHECK(local->local_domain.empty());

    auto rewrite = parse_transport("local:Example.TEST");
    REQUIRE(rewrite.ok());
    CHECK(rewrite->kind == Transport::Kind::local);
    CHECK(rewrite->local_domain == "example.test");

    auto smtp = parse_transport("smtp");
    REQUIRE(smtp.ok());
    CHECK(smtp->kind == Transport::Kind::smtp);
    CHECK_FALSE(smtp->nexthop.has_value());

    auto relay = parse_transport("relay:[10.0.0.5]:2525");
    REQUIRE(relay.ok());
    CHECK(relay->kind == Transport::Kind::smtp);
    REQUIRE(relay->nexthop.has_value());
    CHECK(relay->nexthop->host == "10.0.0.5");
    CHECK(relay->nexthop->port == 2525);
    CHECK_FALSE(relay->nexthop->mx_lookup);

    auto mx = parse_transport("smtp:mail.example.net:587");
    REQUIRE(mx.ok());
    REQUIRE(mx->nexthop.has_value());
    CHECK(mx->nexthop->host == "mail.example.net");
    CHECK(mx->nexthop->mx_lookup);
    CHECK(mx->nexthop->port == 587);

    auto error = parse_transport("error:5.7.1 no mail for you");
    REQUIRE(error.ok());
    CHECK(error->kind == Transport::Kind::error);
    CHECK(error->status == "5.7.1");
    CHECK(error->text == "no mail for you");

    auto plain = parse_transport("error:gone fishing");
    REQUIRE(plain.ok());
    CHECK(plain->status == "5.0.0");
    CHECK(plain->text == "gone fishing");

    auto soft = parse_transport("error:4.4.1 try later");
    REQUIRE(soft.ok());
    CHECK(soft->status == "4.4.1");
}

TEST_CASE("transport: bad transports are refused") {
    auto text = GENERATE(as<std::string>{}, "", "uucp", "local:bad..domain", "local:a b", "relay:[10.0.0.5",
                         "relay:host:99999", "smtp:[]", "error:2.0.0 fine", "error:5.7 short", "relay:a b",
                         "local extra");
    CAPTURE(text);
    CHECK_FALSE(parse_transport(text).ok());
}

TEST_CASE("transport table: exact beats .parent beats shorter parents beats *") {
    auto table = TransportTable::parse(
        "# routing\n"
        "\n"
        "example.com      relay:[10.0.0.1]\n"
        ".example.com     relay:[10.0.0.2]\n"
        ".sub.example.com relay:[10.0.0.3]\n"
        "*                relay:[10.0.0.9]:2525\n"
        "Local.TEST       local\n"
        "  x.test  local:example.test  \r\n"
        "blocked.test     error:5.7.1 no mail for you\n",
        "transport");
    REQUIRE(table.ok());
    CHECK(table->size() == 7);
    auto host = [&](std::string_view domain) -> std::string {
        const Transport* found = table->find(domain);
        if (!found) return "none";
        if (found->kind != Transport::Kind::smtp || !found->nexthop) return "other";
        return found->nexthop->text();
    };
    CHECK(host("example.com") == "[10.0.0.1]");
    CHECK(host("EXAMPLE.com") == "[10.0.0.1]");
    CHECK(host("a.example.com") == "[10.0.0.2]");
    CHECK(host("a.b.example.com") == "[10.0.0.2]");
    CHECK(host("sub.example.com") == "[10.0.0.2]");  // .sub.example.com is only for its subdomains
    CHECK(host("a.sub.example.com") == "[10.0.0.3]");
    CHECK(host("x.y.sub.example.com") == "[10.0.0.3]");
    CHECK(host("example.org") == "[10.0.0.9]:2525");
    CHECK(host("notexample.com") == "[10.0.0.9]:2525");
    REQUIRE(table->find("local.test"));
    CHECK(table->find("local.test")->kind == Transport::Kind::local);
    CHECK(table->find("x.test")->local_domain == "example.test");
    CHECK(table->find("blocked.test")->kind == Transport::Kind::error);

    auto without_default = TransportTable::parse("example.com smtp\n", "t");
    REQUIRE(without_default.ok());
    CHECK(without_default->find("example.org") == nullptr);
    CHECK(without_default->find("a.example.com") == nullptr);
    auto empty = TransportTable::parse("", "t");
    REQUIRE(empty.ok());
    CHECK(empty->size() == 0);
}

TEST_CASE("transport table: a bad line refuses the whole table, with file:line") {
    using Row = std::pair<std::string, std::string>;
    auto row = GENERATE(Row{"ok.test smtp\nlonely\n", "t:2: expected 'pattern transport'"},
                        Row{"a.test smtp\nb.test uucp\n", "t:2: unknown transport 'uucp'"},
                        Row{"\n\na..test smtp\n", "t:3: bad pattern 'a..test'"},
                        Row{"..test smtp\n", "t:1: bad pattern '..test'"},
                        Row{"a.test smtp\nA.TEST local\n", "t:2: 'a.test' is already routed on line 1"},
                        Row{"a/b smtp\n", "t:1: bad pattern"},
                        Row{"a.test relay:[x\n", "t:1: next hop"});
    auto table = TransportTable::parse(row.first, "t");
    REQUIRE_FALSE(table.ok());
    CHECK_THAT(table.error(), Catch::StartsWith(row.second));
    auto long_line = TransportTable::parse(std::string(5000, 'a') + " smtp\n", "t");
    REQUIRE_FALSE(long_line.ok());
    CHECK(long_line.error() == "t:1: line too long");
}

TEST_CASE("transport table: load() reads a file and names it in errors") {
    test::TempDir dir;
    std::string path = dir.file("transport");
    {
        std::ofstream out(path);
        out << "example.com relay:[127.0.0.1]:2525\nbad\n";
    }
    auto table = TransportTable::load(path);
    REQUIRE_FALSE(table.ok());
    CHECK(table.error() == path + ":2: expected 'pattern transport'");
    {
        std::ofstream out(path);
        out << "example.com relay:[127.0.0.1]:2525\n";
    }
    table = TransportTable::load(path);
    REQUIRE(table.ok());
    CHECK(table->find("example.com")->nexthop->port == 2525);
    CHECK_FALSE(TransportTable::load(dir.file("missing")).ok());
}
