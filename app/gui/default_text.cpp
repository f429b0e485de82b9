#include "app/gui/default_text.h"

namespace mxlens::gui {

namespace {

// Written for mxlens. Simple words and short sentences on purpose: small story models know
// them, and large models read them as ordinary English.
constexpr std::string_view kText = R"(The Lighthouse Keeper's Garden

On a small island at the edge of the sea there was an old lighthouse, and next to it lived a
woman named Ada. Every evening she climbed the one hundred and twelve steps to the top and lit
the lamp, so that the fishing boats could find their way home in the dark. Every morning she
climbed down again, made a pot of tea, and went out to look after her garden.

The garden was not large. It had three rows of beans, a bed of carrots, some potatoes, and a
bush of red flowers that the wind could never quite blow over. The soil was thin and full of
stones, and the salt in the air made the leaves curl at their tips. Still, Ada liked to say
that a garden does not need to be easy to be worth the work.

One spring a boy came to the island with his father, who had come to fix the radio. The boy
was called Tom, and he was bored within an hour. There was no shop, no road and no other
child. He sat on a rock and threw small stones into the water until Ada walked past with a
basket and a spade.

"Do you want to help me plant something?" she asked.

Tom shrugged, but he followed her. She showed him how to make a straight line in the soil
with a piece of string and two sticks, how deep to push each seed, and how far apart to put
them. He asked why the seeds had to be so far apart, and she told him that each plant needs
its own share of light and water, and that if they grow too close they fight and none of them
does well.

They worked until the sun was high. Then they sat on the wall and ate bread with cheese, and
Ada told him about the storms. In the worst one, many years ago, the waves had come right over
the wall and washed half the garden into the sea. She had found her spade the next day on the
beach, far below, stuck in the sand like a flag.

"Why did you plant it all again?" Tom asked.

"Because the storm was one night," she said, "and the summer is many days. You do not stop
cooking because you burned the soup once."

In the afternoon the radio worked again, and Tom's father called him down to the boat. Before
he left, Ada gave him a small paper bag of bean seeds. She told him to plant them at home, in a
pot if he had no garden, and to keep them in the light.

Tom kept the bag in his pocket the whole way back. At home he found an old pot behind the shed,
filled it with earth, and pushed the seeds in with his thumb, one by one, not too close. He
watered them every day. For a week nothing happened, and he began to think that seeds from an
island did not like the city. Then one morning there was a small green loop coming out of the
soil, and the next day there were four.

The beans grew up a stick and along the window. By the end of the summer they had long green
pods, and Tom's mother cooked them with butter and salt. They were the best beans any of them
had ever eaten, or at least that is what Tom said, and nobody wanted to argue with him.

Many years later, when Tom was grown, he went back to the island. The lighthouse had an
electric lamp now that turned itself on, and nobody lived there any more. The wall was still
there, and behind it, among the stones and the long grass, a bush of red flowers was still
standing in the wind.

He sat on the wall for a long time. Then he took a small paper bag out of his pocket, made a
straight line in the soil with a piece of string and two sticks, and began to plant.

A Note on Numbers

People have always counted things: sheep, days, coins, stars. The first numbers were marks on
bone or clay, one mark for each thing. Later came signs for five and ten, and much later the
idea of zero, which lets a small set of signs write any number at all. A number written with
only a few signs cannot be exact about everything. Four bits can hold only sixteen values, so a
machine that stores numbers that way must choose which values matter most, and share one scale
among a small group of them. When one value in the group is very large, the others are pushed
toward zero and lose their detail. Turning the group a little, so that no single value stands
out, lets every member keep more of what it had to say.
)";

}  // namespace

std::string_view defaultCalibrationText() {
  return kText;
}

}  // namespace mxlens::gui
