"""Do ELPV cells share one orientation? (why the no-quarter-turn teacher was tried)

    python docs/results/cell_orientation.py > docs/results/cell-orientation.txt

For each of the 2,624 cells: the spread (standard deviation) of its row means against that of
its column means. A cell whose intensity varies more down the rows than across the columns has
horizontal structure (bus bars, cell edges); if cells came in both orientations, about half
would. Prints the count overall and by cell type.
"""

import numpy as np
from elpv_dataset.utils import load_dataset


def main():
    images, _, types = load_dataset()
    x = images.astype(np.float32)
    rows = x.mean(axis=2).std(axis=1)  # spread of the row means
    cols = x.mean(axis=1).std(axis=1)  # spread of the column means
    horizontal = rows > cols
    print(f"all: {horizontal.sum()} of {len(x)} cells ({horizontal.mean():.1%}) vary more down "
          "the rows than across the columns")
    for kind in sorted(set(types)):
        mask = types == kind
        print(f"{kind}: {horizontal[mask].sum()} of {mask.sum()} ({horizontal[mask].mean():.1%})")


if __name__ == "__main__":
    main()
