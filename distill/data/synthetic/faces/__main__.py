"""``python -m distill.data.synthetic.faces --out grid.png``: a grid of synthetic faces to look at."""

from distill.data.synthetic.faces.sets import main

if __name__ == "__main__":
    main()
