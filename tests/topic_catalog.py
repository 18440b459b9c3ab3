"""A small catalog whose items fall into clearly separated topics."""

from __future__ import annotations

TOPICS: dict[str, list[str]] = {
    "space": [
        "Telescope guide to observing the planets",
        "Mars rover exploration of the red planet",
        "Black holes and neutron stars explained",
        "Rocket launch to the International Space Station",
        "Astronaut training for a lunar mission",
        "Galaxies, nebulae and the Milky Way",
        "Comets and asteroids in the solar system",
        "Exoplanets orbiting distant stars",
        "Saturn's rings photographed by a space probe",
        "Astronomy for beginners: the night sky",
    ],
    "baking": [
        "Sourdough bread baking with a wild yeast starter",
        "Chocolate chip cookie recipe",
        "Croissants and laminated pastry dough",
        "Cake decorating with buttercream frosting",
        "Baking baguettes in a home oven",
        "Apple pie with a flaky butter crust",
        "Cinnamon rolls with cream cheese icing",
        "Gluten-free muffins and quick breads",
        "Macarons: French almond meringue cookies",
        "Banana bread recipe with walnuts",
    ],
    "football": [
        "Premier League soccer match highlights",
        "World Cup football final tactics",
        "Goalkeeper saves penalty kicks",
        "Champions League football club transfers",
        "Football striker scores a hat-trick",
        "Soccer training drills for midfielders",
        "Offside rule explained for football fans",
        "Legendary football coaches and their teams",
        "Women's football league championship",
        "Soccer stadium atmosphere and supporters",
    ],
}


def catalog_items() -> list[dict]:
    """Item records (JSON-ready) with ids like ``space-3``."""
    items = []
    for topic, titles in TOPICS.items():
        for index, title in enumerate(titles):
            items.append({"item_id": f"{topic}-{index}", "title": title, "categories": [topic]})
    return items


def topic_of(item_id: str) -> str:
    return item_id.rsplit("-", 1)[0]


_WORDS = {
    "space": (["Telescope", "Orbital", "Lunar", "Martian", "Galactic", "Solar", "Interstellar", "Astronaut"],
              ["observations of distant galaxies", "mission to the red planet", "rocket launch countdown",
               "guide to the night sky", "survey of exoplanets", "voyage beyond the solar system"]),
    "baking": (["Sourdough", "Buttery", "Chocolate", "Cinnamon", "Almond", "Homemade", "Gluten-free", "Rustic"],
               ["bread baking recipe", "cookie dough techniques", "pastry and croissant lessons",
                "cake frosting tutorial", "muffin and scone recipes", "pie crust from scratch"]),
    "football": (["Premier League", "World Cup", "Champions League", "Derby day", "Youth academy", "Stadium"],
                 ["soccer match highlights", "football transfer news", "goalkeeper penalty saves",
                  "striker scoring goals", "football tactics analysis", "soccer training drills"]),
}


def large_catalog_items(per_topic: int = 40) -> list[dict]:
    """``per_topic`` distinct, clearly topical items per topic (for drift tests)."""
    items = []
    for topic, (adjectives, nouns) in _WORDS.items():
        count = 0
        for noun in nouns:
            for adjective in adjectives:
                if count == per_topic:
                    break
                items.append({"item_id": f"{topic}-{count}", "title": f"{adjective} {noun}", "categories": [topic]})
                count += 1
    return items
