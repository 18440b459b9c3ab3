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
